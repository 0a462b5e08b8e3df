"""The hostile store, parsing: every malformed manifest, pointer or file is a store error.

Findings 7, 8 and 9 of issue 18: a running worker died on hot reload from exceptions that
were not ``ModelStoreError`` (``OverflowError``, ``RecursionError``, ``TypeError``,
``KeyError``, ``AttributeError``); regexes anchored with ``$`` accepted a trailing newline;
torch weights of any dtype were cast and NaN passed; a bit generator name riding in a JSON
string escaped the allowlist pre-check.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import skops.io as sio
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import model_store._sklearn_format
from model_store import (
    IntegrityError,
    InvalidNameError,
    ModelStore,
    ModelStoreError,
    UnsafeModelError,
    build_torch_model,
)
from model_store._manifest import is_safe_filename
from tests.model_store.hostile import edit_manifest, rewrite_zip, swap, version_dir

MLP = {"arch": "mlp", "n_inputs": 4, "hidden": [3], "n_outputs": 2, "task": "classification"}
MULTI = {
    "arch": "multitask_mlp",
    "n_inputs": 4,
    "trunk": [3],
    "tasks": [
        {"name": "a", "type": "classification", "n_outputs": 2},
        {"name": "b", "type": "regression", "n_outputs": 1},
    ],
}


@pytest.fixture
def lr_store(store: ModelStore, clf_data) -> ModelStore:
    X, y = clf_data
    store.publish("lr", LogisticRegression().fit(X, y))
    return store


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "pointer",
    [
        {"version": 10**300},
        {"version": True},
        {"version": -1},
        {"version": 0},
        {"version": "1"},
        {"version": 1.0},
        {"version": 1, "stack": "1"},
        {"version": 1, "stack": [True]},
        {"version": 1, "history": [1]},
        [1],
        "NESTED",
        "NOT JSON",
    ],
)
def test_malformed_pointers_are_store_errors(lr_store: ModelStore, pointer: Any) -> None:
    path = lr_store.root / "lr" / "active.json"
    if pointer == "NESTED":
        path.write_text('{"version": ' + _nested(100_000) + "}")
    elif pointer == "NOT JSON":
        path.write_bytes(b"\xff\xfe{")
    else:
        path.write_text(json.dumps(pointer))
    with pytest.raises(ModelStoreError, match=r"active\.json"):
        lr_store.active_version("lr")
    with pytest.raises(ModelStoreError):
        lr_store.load("lr")
    with pytest.raises(ModelStoreError):
        lr_store.rollback("lr")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_outputs", "3"),
        ("n_outputs", 10**300),
        ("input_schema", [4]),
        ("input_schema", {"n_features": True, "feature_names": None}),
        ("classes", {"cat": 1}),
        ("classes", ["cat", "dog", ["eel"]]),
        ("classes", ["cat", "dog"]),
        ("tasks", "x"),
        ("task", 5),
        ("framework", ["sklearn"]),
        ("output_kind", None),
        ("files", []),
        ("version", True),
        ("spec", {"arch": "mlp"}),
    ],
)
def test_manifest_fields_of_the_wrong_type(lr_store: ModelStore, field: str, value: Any) -> None:
    edit_manifest(lr_store.root, "lr", lambda m: m.update({field: value}))
    with pytest.raises(IntegrityError, match=r"manifest\.json"):
        lr_store.load("lr")


@pytest.mark.parametrize("entry", [{"sha256": 5, "size": 1}, {"sha256": "0" * 64, "size": "1"}, []])
def test_malformed_file_entries(lr_store: ModelStore, entry: Any) -> None:
    edit_manifest(lr_store.root, "lr", lambda m: m["files"].update({"model.skops": entry}))
    with pytest.raises(IntegrityError, match=r"model\.skops.*bad manifest entry"):
        lr_store.load("lr")


def test_deeply_nested_manifest(lr_store: ModelStore) -> None:
    path = version_dir(lr_store.root, "lr") / "manifest.json"
    path.write_text(path.read_text()[:-1] + ', "x": ' + _nested(100_000) + "}")
    with pytest.raises(IntegrityError, match="nested too deeply"):
        lr_store.load("lr")


def test_names_with_a_trailing_newline_are_refused(store: ModelStore, clf_data) -> None:
    X, y = clf_data
    with pytest.raises(InvalidNameError):
        store.publish("lr\n", LogisticRegression().fit(X, y))
    assert not is_safe_filename("model.skops\n")
    assert not model_store._versions._VERSION_DIR.fullmatch("1\n")


def test_missing_classes_is_a_store_error(lr_store: ModelStore) -> None:
    model = sio.loads((version_dir(lr_store.root, "lr") / "model.skops").read_bytes(), trusted=[])
    del model.classes_
    swap(lr_store.root, "lr", "model.skops", sio.dumps(model))
    with pytest.raises(ModelStoreError, match="classes_"):
        lr_store.load("lr")


@pytest.mark.parametrize("task_name", ["forward", "keys", "training", "a.b", "ünï", "a\n"])
def test_task_names_that_cannot_be_heads(store: ModelStore, task_name: str) -> None:
    store.publish("multi", build_torch_model(MULTI), framework="torch", spec=MULTI)

    def rename(manifest: dict[str, Any]) -> None:
        manifest["spec"]["tasks"][0]["name"] = task_name
        manifest["tasks"][0]["name"] = task_name

    edit_manifest(store.root, "multi", rename)
    with pytest.raises(IntegrityError, match="task name"):
        store.load("multi")


def _torch_store(store: ModelStore, tensors: dict[str, torch.Tensor] | None = None) -> None:
    net = build_torch_model(MLP)
    store.publish("net", net, framework="torch", spec=MLP)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    swap(
        store.root, "net", "model.safetensors", safetensors.torch.save({**state, **(tensors or {})})
    )


def test_torch_weights_of_another_dtype_are_refused(store: ModelStore) -> None:
    _torch_store(store, {"net.0.weight": torch.zeros(3, 4, dtype=torch.float64)})
    with pytest.raises(UnsafeModelError, match="dtype 'F64', expected F32"):
        store.load("net")


def test_nan_weights_are_refused(store: ModelStore) -> None:
    _torch_store(store, {"net.2.bias": torch.tensor([float("nan"), 0.0])})
    with pytest.raises(UnsafeModelError, match="NaN or infinity"):
        store.load("net")


def test_weights_are_compared_with_the_spec_before_building(store: ModelStore) -> None:
    _torch_store(store, {"net.9.weight": torch.zeros(1)})
    with pytest.raises(UnsafeModelError, match=r"unexpected \['net\.9\.weight'\]"):
        store.load("net")


def _schema_edit(store: ModelStore, edit: Any) -> None:
    data = (version_dir(store.root, "lr") / "model.skops").read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    schema = edit(schema)
    swap(
        store.root,
        "lr",
        "model.skops",
        rewrite_zip(data, {"schema.json": json.dumps(schema).encode()}),
    )


def test_bit_generator_name_in_a_json_string_is_checked(store: ModelStore, clf_data) -> None:
    X, y = clf_data
    model = LogisticRegression().fit(X, y)
    model.rng_ = np.random.default_rng(0)
    store.publish("lr", model)

    def rename(schema: dict[str, Any]) -> dict[str, Any]:
        node = schema["content"]["content"]["rng_"]
        node["content"]["bit_generator"]["content"]["bit_generator"]["content"] = '"seed"'
        return schema

    _schema_edit(store, rename)
    with pytest.raises(UnsafeModelError) as info:
        store.load("lr")
    assert info.value.type_name == "numpy.random.seed"


def test_deeply_nested_skops_schema(lr_store: ModelStore) -> None:
    junk: list[Any] = []
    for _ in range(500):
        junk = [junk]
    _schema_edit(lr_store, lambda schema: {**schema, "junk": junk})
    with pytest.raises(UnsafeModelError, match="nested deeper"):
        lr_store.load("lr")


def test_a_tree_outside_a_tree_estimator_is_refused(lr_store: ModelStore, clf_data) -> None:
    X, y = clf_data
    model = sio.loads((version_dir(lr_store.root, "lr") / "model.skops").read_bytes(), trusted=[])
    model.hidden_tree_ = DecisionTreeClassifier(max_depth=2).fit(X[:, :2], y).tree_
    swap(lr_store.root, "lr", "model.skops", sio.dumps(model))
    with pytest.raises(UnsafeModelError, match="outside a supported tree estimator"):
        lr_store.load("lr")


def test_any_loader_exception_becomes_a_store_error_naming_the_file(
    lr_store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise KeyError("deep inside a loader")

    monkeypatch.setattr(model_store._sklearn_format, "load_sklearn", explode)
    with pytest.raises(
        IntegrityError, match=r"'model\.skops': cannot be loaded \(KeyError"
    ) as info:
        lr_store.load("lr")
    assert isinstance(info.value.__cause__, KeyError)


def test_malformed_strategy_meta_and_fitted_on(store: ModelStore, rng, clf_data) -> None:
    X, y = clf_data
    store.publish("lr", LogisticRegression().fit(X, y))
    store.publish_strategy("s", {"name": "soft_vote"}, {"w": rng.random(2)}, fitted_on={"lr": 1})
    swap(store.root, "s", "meta.json", b"[1, 2]", "_strategies")
    with pytest.raises(IntegrityError, match=r"meta\.json.*not an object"):
        store.load_strategy("s")
    swap(store.root, "s", "meta.json", _nested(100_000).encode(), "_strategies")
    with pytest.raises(IntegrityError, match=r"meta\.json"):
        store.load_strategy("s")
    edit_manifest(store.root, "s", lambda m: m.update(fitted_on={"lr": 10**300}), "_strategies")
    with pytest.raises(IntegrityError, match="fitted_on"):
        store.load_strategy("s")


def test_store_error_for_unreadable_root_entries(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "_strategies").write_text("not a folder")
    assert ModelStore(root).strategies() == []
