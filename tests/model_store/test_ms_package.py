"""Package-level contracts: exports, error hierarchy, dependency direction."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import model_store
from model_store import errors

PACKAGE_DIR = Path(model_store.__file__).parent


def test_all_names_are_exported() -> None:
    for name in model_store.__all__:
        assert hasattr(model_store, name), name
    assert {"ModelStore", "LoadedModel", "StoredStrategy", "build_torch_model"} <= set(
        model_store.__all__
    )


def test_never_imports_worker_or_combiners() -> None:
    for path in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                assert top not in {"worker", "combiners", "pickle", "dill"}, (path.name, module)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.ModelNotFoundError("m", 3), LookupError),
        (errors.RollbackError("m"), LookupError),
        (errors.IntegrityError("m", 1, "model.skops"), ValueError),
        (errors.UnsafeModelError("m", 1, "model.skops", type_name="os.system"), ValueError),
        (errors.PublishError("m", "bad"), ValueError),
        (errors.InvalidSpecError("arch", "bad"), ValueError),
        (errors.InputShapeError("m", 1, 4, (2, 3)), ValueError),
        (errors.InvalidNameError("../m"), ValueError),
        (errors.StoreLayoutError("/x", "bad"), Exception),
    ],
)
def test_error_hierarchy(error: Exception, builtin: type[Exception]) -> None:
    assert isinstance(error, errors.ModelStoreError)
    assert isinstance(error, builtin)
    assert str(error)


def test_error_messages_name_the_domain_values() -> None:
    assert str(errors.ModelNotFoundError("rf", 3)) == "model 'rf' version 3 not found"
    assert "'model.skops'" in str(errors.IntegrityError("rf", 2, "model.skops"))
    assert "'os.system'" in str(
        errors.UnsafeModelError("rf", 2, "model.skops", type_name="os.system")
    )


def test_store_root_must_be_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(errors.StoreLayoutError):
        model_store.ModelStore(path)
