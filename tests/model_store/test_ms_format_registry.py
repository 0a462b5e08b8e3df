"""One :class:`Format` per framework (issue 23, Build 7 in part): the store dispatches on the
registry and compares no framework names of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import model_store
from model_store import FRAMEWORKS, PublishError
from model_store._formats import FORMATS, format_for, libraries_of
from model_store._import import EXTENSIONS

PACKAGE_DIR = Path(model_store.__file__).parent


def test_every_framework_has_one_format_with_its_file_and_endings() -> None:
    assert tuple(FORMATS) == FRAMEWORKS == ("sklearn", "torch", "xgboost", "lightgbm", "onnx")
    filenames = [f.filename for f in FORMATS.values()]
    assert len(set(filenames)) == len(filenames)
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.extensions == EXTENSIONS[name] and fmt.libraries


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
