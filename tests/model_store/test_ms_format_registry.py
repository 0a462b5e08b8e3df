"""One :class:`Format` per framework, each in its own module (issue 23, Build 7): the store
dispatches on the registry and compares no framework names of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import model_store
from model_store import FRAMEWORKS, PublishError
from model_store._formats import FORMATS, format_for, libraries_of

PACKAGE_DIR = Path(model_store.__file__).parent


def test_every_framework_has_one_format_with_its_file_and_endings() -> None:
    assert tuple(FORMATS) == FRAMEWORKS == ("sklearn", "torch", "xgboost", "lightgbm", "onnx")
    filenames = [f.filename for f in FORMATS.values()]
    assert len(set(filenames)) == len(filenames)
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.extensions and fmt.libraries and fmt.tasks
        assert all(ext.startswith(".") for ext in fmt.extensions), name


def test_an_unknown_framework_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(PublishError, match="sklearn, torch, xgboost, lightgbm, onnx"):
        format_for("pytorch", "m")
    with pytest.raises(PublishError):
        format_for(["onnx"], "m")  # type: ignore[arg-type]


def test_a_trial_child_imports_the_libraries_of_the_served_frameworks_only() -> None:
    assert libraries_of(["onnx", "onnx"]) == ("onnx", "onnxruntime")
    assert libraries_of(["sklearn", "unknown"]) == ("sklearn", "skops.io")


def test_the_store_facade_compares_no_framework_names() -> None:
    source = (PACKAGE_DIR / "_store.py").read_text()
    code = re.sub(r'"""[\s\S]*?"""', "", source)  # docstrings may name them
    assert not re.search(r"framework\"?\]?\s*(==|!=|in)\s", code)
    for fmt in FORMATS.values():
        assert f'"{fmt.filename}"' not in code
    for constant in ("SKLEARN_FILE", "TORCH_FILE", "NATIVE_FILES", "NATIVE_FRAMEWORKS"):
        assert constant not in code, constant


def test_publish_is_written_once() -> None:
    source = (PACKAGE_DIR / "_store.py").read_text()
    assert source.count("input_schema: Mapping[str, Any] | None = None") == 1


def test_each_native_format_is_defined_in_its_own_module_only() -> None:
    from model_store import _lightgbm_io, _onnx_io, _xgboost_io

    codecs = {m.CODEC.name: m.CODEC for m in (_xgboost_io, _lightgbm_io, _onnx_io)}
    assert list(codecs) == ["xgboost", "lightgbm", "onnx"]
    for name, codec in codecs.items():
        assert FORMATS[name].filename == codec.filename
        assert FORMATS[name].libraries == codec.libraries
    code = re.sub(r'"""[\s\S]*?"""', "", (PACKAGE_DIR / "_native.py").read_text())
    for name, codec in codecs.items():
        assert f'"{name}"' not in code and f'"{codec.filename}"' not in code, name


def test_a_file_is_imported_through_its_format() -> None:
    code = re.sub(r'"""[\s\S]*?"""', "", (PACKAGE_DIR / "_import.py").read_text())
    assert not re.search(r"framework\s*(==|!=)\s", code)


#: The format modules: the only places in the package that spell a framework's name.
_FORMAT_MODULES = {
    "_sklearn_format.py",
    "_torch_format.py",
    "_xgboost_io.py",
    "_lightgbm_io.py",
    "_onnx_io.py",
}


def test_only_the_format_modules_spell_a_framework_name_in_code() -> None:
    spelt = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        if path.name in _FORMAT_MODULES:
            continue
        code = re.sub(r'"""[\s\S]*?"""', "", path.read_text())  # docstrings may name them
        code = re.sub(r"(?m)#.*$", "", code)
        found = [n for n in FORMATS if re.search(rf"['\"]{n}['\"]", code)]
        if found:
            spelt[path.name] = found
    # _manifest records library versions by import name; _store's publish defaults to sklearn.
    assert spelt == {
        "_manifest.py": ["sklearn", "torch", "xgboost", "lightgbm", "onnx"],
        "_store.py": ["sklearn"],
    }


def test_each_format_module_defines_its_format_and_the_registry_holds_them() -> None:
    from model_store import _sklearn_format, _torch_format

    assert FORMATS["sklearn"] is _sklearn_format.FORMAT
    assert FORMATS["torch"] is _torch_format.FORMAT
    code = re.sub(r'"""[\s\S]*?"""', "", (PACKAGE_DIR / "_formats.py").read_text())
    assert "def load" in code and "class Format(Protocol)" in code
    assert not re.search(r"^class (?!Format\b)", code, re.M), "only the protocol lives here"


def test_check_asks_the_registry_for_the_structure() -> None:
    code = re.sub(r'"""[\s\S]*?"""', "", (PACKAGE_DIR / "check.py").read_text())
    assert not re.search(r"framework\s*(==|!=|in)\s", code)
    assert "_FRAMEWORKS" not in code and "_structure" not in code
