"""The hostile store, dangerous part: inputs that crashed, hung or exhausted a loader.

Each case is a small real file made through ``ModelStore.publish`` and then altered. They
run in child processes with an address-space limit (the child's imports plus 1 GiB), a CPU
limit and a wall-clock timeout, so a regression (a segfault, an endless loop, a blow-up)
fails these tests instead of killing pytest. One child per group keeps the imports'
cost (seconds) to three.
"""

from __future__ import annotations

import io
import json
import os
import signal
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression

from model_store import ModelStore, build_torch_model
from tests.model_store.hostile import edit_manifest, run_child, swap, version_dir, zip_with_bomb

pytestmark = pytest.mark.slow

CHILD_LOADS = """
store = ModelStore(sys.argv[1])
for name in store.models():
    run(name, lambda name=name: store.load(name).predict_outputs(numpy.zeros((2, 4))))
for name in store.datasets():
    run("dataset_" + name, lambda name=name: store.load_dataset(name))
"""


def _edited_tree(tree: Any, edit: Any) -> Any:
    """A copy of a scikit-learn ``Tree`` whose node records went through ``edit``."""
    cls, args, state = tree.__reduce__()
    nodes = state["nodes"].copy()
    edit(nodes)
    clone = cls(*args)
    clone.__setstate__({**state, "nodes": nodes})
    return clone


def _first_split(nodes: np.ndarray) -> int:
    return int(np.flatnonzero(nodes["left_child"] != -1)[0])


def _set(field: str, value: Any, node: str = "root") -> Any:
    def edit(nodes: np.ndarray) -> None:
        i = 0 if node == "root" else int(np.flatnonzero(nodes["left_child"] != -1)[-1])
        nodes[field][i] = value

    return edit


TREE_CASES = {
    "rf_child_out_of_range": ("rf", _set("left_child", 10**6)),
    "rf_feature_out_of_range": ("rf", _set("feature", 10**6)),
    "rf_negative_feature": ("rf", _set("feature", -(10**6))),
    "rf_half_leaf": ("rf", _set("right_child", -1)),
    "rf_cycle": ("rf", _set("right_child", 0, node="last")),
    "rf_nan_threshold": ("rf", _set("threshold", np.nan)),
    "gb_feature_out_of_range": ("gb", _set("feature", 10**6)),
}


@pytest.fixture(scope="module")
def tree_results(tmp_path_factory: pytest.TempPathFactory, clf_data) -> dict[str, Any]:
    X, y = clf_data
    root = tmp_path_factory.mktemp("trees") / "store"
    store = ModelStore(root)
    fitted = {
        "rf": RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(X, y),
        "gb": GradientBoostingClassifier(n_estimators=3, max_depth=2, random_state=0).fit(X, y),
    }
    for case, (kind, edit) in TREE_CASES.items():
        store.publish(case, fitted[kind])
        model = sio.loads(
            sio.dumps(fitted[kind]), trusted=sio.get_untrusted_types(data=sio.dumps(fitted[kind]))
        )
        tree_holder = model.estimators_[0] if kind == "rf" else model.estimators_[0, 0]
        tree_holder.tree_ = _edited_tree(tree_holder.tree_, edit)
        swap(root, case, "model.skops", sio.dumps(model))
    hgb = HistGradientBoostingClassifier(max_iter=3, random_state=0).fit(X, y)
    for case, field, value in (
        ("hgb_feature_out_of_range", "feature_idx", 10**6),
        ("hgb_child_out_of_range", "left", 10**6),
    ):
        store.publish(case, hgb)
        model = sio.loads(sio.dumps(hgb), trusted=sio.get_untrusted_types(data=sio.dumps(hgb)))
        nodes = model._predictors[0][0].nodes.copy()
        nodes[field][0] = value
        model._predictors[0][0].nodes = nodes
        swap(root, case, "model.skops", sio.dumps(model))
    code, results, stderr = run_child(CHILD_LOADS, root, cpu_s=60)
    return {"code": code, "results": results, "stderr": stderr}


@pytest.mark.parametrize(
    "case", [*TREE_CASES, "hgb_feature_out_of_range", "hgb_child_out_of_range"]
)
def test_malformed_trees_are_refused_before_any_prediction(
    tree_results: dict[str, Any], case: str
) -> None:
    assert tree_results["code"] == 0, _death(tree_results)
    result = tree_results["results"][case]
    assert result["error"] == "UnsafeModelError", result
    assert "malformed tree" in result["message"] and "model.skops" in result["message"]


def _death(outcome: dict[str, Any]) -> str:
    code = outcome["code"]
    how = signal.Signals(-code).name if code < 0 else f"exit {code}"
    return f"child died ({how}): {outcome['stderr'][-2000:]}"


def _lr_store(root: Path, clf_data) -> ModelStore:
    X, y = clf_data
    store = ModelStore(root)
    store.publish("lr_bomb", LogisticRegression().fit(X, y))
    return store


@pytest.fixture(scope="module")
def exhaustion_results(tmp_path_factory: pytest.TempPathFactory, clf_data) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("exhaustion") / "store"
    store = _lr_store(root, clf_data)
    skops_file = version_dir(root, "lr_bomb") / "model.skops"
    data = skops_file.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    coef_file = schema["content"]["content"]["coef_"]["file"]  # an .npy skops reads eagerly
    swap(root, "lr_bomb", "model.skops", zip_with_bomb(data, coef_file, n_units=220))  # 3.4 GiB

    store.publish_dataset("npz_bomb", {"X": np.zeros((3, 4))})
    npz = (version_dir(root, "npz_bomb", "_datasets") / "arrays.npz").read_bytes()
    swap(root, "npz_bomb", "arrays.npz", zip_with_bomb(npz, "X.npy", n_units=120), "_datasets")

    store.publish_dataset("npy_header_lies", {"X": np.zeros(1)})
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (4_000_000_000,)}
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("X.npy", header.getvalue() + bytes(8))
    swap(root, "npy_header_lies", "arrays.npz", buffer.getvalue(), "_datasets")

    spec = {"arch": "mlp", "n_inputs": 4, "hidden": [3], "n_outputs": 1, "task": "regression"}
    store.publish("torch_wide", build_torch_model(spec), framework="torch", spec=spec)
    edit_manifest(root, "torch_wide", lambda m: m["spec"].update(hidden=[20000, 20000]))
    store.publish("torch_wide_within_caps", build_torch_model(spec), framework="torch", spec=spec)
    edit_manifest(  # 64 M parameters, 256 MB: within the caps, refused by the header check
        root, "torch_wide_within_caps", lambda m: m["spec"].update(hidden=[8000, 8000])
    )

    multi = {
        "arch": "multitask_mlp",
        "n_inputs": 4,
        "trunk": [3],
        "tasks": [{"name": "a", "type": "regression", "n_outputs": 1}],
    }
    store.publish("torch_heads", build_torch_model(multi), framework="torch", spec=multi)

    def many_heads(manifest: dict[str, Any]) -> None:
        tasks = [{"name": f"t{i}", "type": "regression", "n_outputs": 1} for i in range(50_000)]
        manifest["spec"]["tasks"] = tasks
        manifest["tasks"] = [{**t, "classes": None} for t in tasks]
        manifest["n_outputs"] = len(tasks)

    edit_manifest(root, "torch_heads", many_heads)
    code, results, stderr = run_child(CHILD_LOADS, root, cpu_s=60)
    return {
        "code": code,
        "results": results,
        "stderr": stderr,
        "sizes": {
            "lr_bomb": (version_dir(root, "lr_bomb") / "model.skops").stat().st_size,
        },
    }


EXHAUSTION_CASES = {
    "lr_bomb": ("UnsafeModelError", "inflate to more than the cap"),
    "dataset_npz_bomb": ("UnsafeModelError", "inflate to more than the cap"),
    "dataset_npy_header_lies": ("UnsafeModelError", "the member holds 8"),
    "torch_wide": ("IntegrityError", "at most 64 layers of at most 16384 units"),
    "torch_wide_within_caps": ("UnsafeModelError", "weights do not match the spec"),
    "torch_heads": ("IntegrityError", "over the cap"),
}


@pytest.mark.parametrize("case", EXHAUSTION_CASES)
def test_tiny_files_cannot_exhaust_memory_or_cpu(
    exhaustion_results: dict[str, Any], case: str
) -> None:
    assert exhaustion_results["code"] == 0, _death(exhaustion_results)
    result = exhaustion_results["results"][case]
    error, message = EXHAUSTION_CASES[case]
    assert result["error"] == error, result
    assert message in result["message"]
    assert result["rss_growth"] < 200 << 20, result
    assert result["cpu_s"] < 5, result
    assert exhaustion_results["sizes"]["lr_bomb"] < 4 << 20


@pytest.fixture(scope="module")
def special_file_results(tmp_path_factory: pytest.TempPathFactory, clf_data) -> dict[str, Any]:
    X, y = clf_data
    root = tmp_path_factory.mktemp("special") / "store"
    store = ModelStore(root)
    for case in ("fifo_model_file", "dev_zero_model_file"):
        store.publish(case, LogisticRegression().fit(X, y))
    model_file = version_dir(root, "fifo_model_file") / "model.skops"
    model_file.unlink()
    os.mkfifo(model_file)
    model_file = version_dir(root, "dev_zero_model_file") / "model.skops"
    model_file.unlink()
    model_file.symlink_to("/dev/zero")
    code, results, stderr = run_child(CHILD_LOADS, root, cpu_s=30, timeout=60)
    return {"code": code, "results": results, "stderr": stderr}


@pytest.mark.parametrize(
    ("case", "reason"),
    [("fifo_model_file", "a FIFO, not a regular file"), ("dev_zero_model_file", "symlink")],
)
def test_special_files_neither_hang_nor_grow(
    special_file_results: dict[str, Any], case: str, reason: str
) -> None:
    assert special_file_results["code"] == 0, _death(special_file_results)
    result = special_file_results["results"][case]
    assert result["error"] == "IntegrityError", result
    assert "model.skops" in result["message"] and reason in result["message"]
