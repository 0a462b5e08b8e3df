"""The hostile store against the XGBoost and LightGBM formats (issue 23, findings 1, 2, 6).

Each case is a model published through :meth:`ModelStore.publish`, then altered as a writer
of the store directory would (file and manifest together), and loaded in a child process
with an address-space and CPU limit and a timeout (``hostile.run_child``): on the code
before the fix, the categorical arrays and the re-spelt LightGBM children killed the child
with SIGSEGV or hung it. The number-spelling fuzz runs in a child too, for the same reason.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from model_store import ModelStore
from tests.model_store.hostile import run_child, swap, version_dir

pytestmark = pytest.mark.slow

CHILD_LOADS = """
store = ModelStore(sys.argv[1])
for name in store.models():
    run(name, lambda name=name: store.load(name).predict_outputs(numpy.zeros((2, 4))))
"""


def _death(outcome: dict[str, Any]) -> str:
    code = outcome["code"]
    how = signal.Signals(-code).name if code < 0 else f"exit {code}"
    return f"child died ({how}): {outcome['stderr'][-2000:]}"


def _xgb_doc(root: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((version_dir(root, name) / "model.json").read_bytes())
    return doc


def _xgb_trees(doc: dict[str, Any]) -> list[dict[str, Any]]:
    trees: list[dict[str, Any]] = doc["learner"]["gradient_booster"]["model"]["trees"]
    return trees


def _categorical_arrays(doc: dict[str, Any]) -> None:
    # What segfaulted XGBoost: nodes and segments pointing into an empty `categories`.
    tree = _xgb_trees(doc)[0]
    tree.update(categories_nodes=[0], categories_segments=[1 << 30], categories_sizes=[1 << 20])


def _cats_encoding(doc: dict[str, Any]) -> None:
    doc["learner"]["gradient_booster"]["model"]["cats"]["sorted_idx"] = [5, 1 << 30]


def _unknown_tree_key(doc: dict[str, Any]) -> None:
    _xgb_trees(doc)[0]["leaf_vector"] = [1.0] * 1000


def _empty_objects(doc: dict[str, Any]) -> None:
    doc["learner"]["attributes"]["junk"] = "x"  # a place the old check never looked at
    doc["learner"]["junk"] = [{}] * 300_000


def _softmax_classes(doc: dict[str, Any]) -> None:
    doc["learner"]["objective"]["softmax_multiclass_param"]["num_class"] = "100000"


def _weight_drop(doc: dict[str, Any]) -> None:
    doc["learner"]["gradient_booster"]["weight_drop"] = [1.0]


def _float32_overflow(doc: dict[str, Any]) -> None:
    tree = _xgb_trees(doc)[0]
    tree["split_conditions"][0] = 1e39  # finite as a double, infinite in XGBoost's float32


XGB_CASES = {
    "xgb_categorical_arrays": ("softprob", _categorical_arrays, "categories_nodes"),
    "xgb_cats_encoding": ("softprob", _cats_encoding, "model.cats is not empty"),
    "xgb_unknown_tree_key": ("softprob", _unknown_tree_key, "unknown key 'leaf_vector'"),
    "xgb_empty_objects": ("softprob", _empty_objects, "more objects than a model"),
    "xgb_softmax_classes": ("softprob", _softmax_classes, "differs from num_class 3"),
    "xgb_dart_weight_drop": ("dart", _weight_drop, "weight_drop must be a list of"),
    "xgb_float32_overflow": ("softprob", _float32_overflow, "not finite as a float32"),
}


def _lgb_edit_first(keys: str, old: str, new: str) -> Any:
    """Re-spell one token ``old`` of one of ``keys`` (space-separated) in the first tree
    holding it."""

    def edit(text: str) -> str:
        lines = text.split("\n")
        for i, line in enumerate(lines):
            key = line.partition("=")[0]
            if key in keys.split(" "):
                tokens = line[len(key) + 1 :].split(" ")
                if old in tokens:
                    tokens[tokens.index(old)] = new
                    lines[i] = key + "=" + " ".join(tokens)
                    return "\n".join(lines)
        raise AssertionError(f"no {keys} token {old!r}")

    return edit


LGB_CASES = {
    # The check read 1 (the split after the root), LightGBM 10: a split index out of range.
    "lgb_child_exponent": (_lgb_edit_first("left_child", "1", "10e-1"), "plain decimal"),
    # The check read -1 (leaf 0), LightGBM -1000000000: a leaf far outside the tree.
    "lgb_leaf_exponent": (
        _lgb_edit_first("left_child right_child", "-1", "-1000000000e-9"),
        "plain decimal",
    ),
    # Python's int() reads 1_2 as 12; LightGBM reads 1.
    "lgb_num_leaves_underscore": (
        lambda t: re.sub(r"num_leaves=([0-9])([0-9]+)\n", r"num_leaves=\1_\2\n", t, count=1),
        "num_leaves must be an integer",
    ),
    "lgb_objective_classes": (
        lambda t: t.replace("num_class:3", "num_class:100000", 1),
        "objective num_class must be",
    ),
    "lgb_objective_param": (
        lambda t: t.replace("num_class:3", "num_class:3 alpha:7", 1),
        "unknown objective parameter",
    ),
}


@pytest.fixture(scope="module")
def tree_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    root = tmp_path_factory.mktemp("formats") / "store"
    store = ModelStore(root)
    xgb_models = {
        "softprob": xgb.XGBClassifier(n_estimators=3, max_depth=3).fit(X, y),
        "dart": xgb.XGBClassifier(n_estimators=3, max_depth=3, booster="dart").fit(X, y),
    }
    for case, (kind, edit, _) in XGB_CASES.items():
        store.publish(case, xgb_models[kind], framework="xgboost")
        doc = _xgb_doc(root, case)
        edit(doc)
        swap(root, case, "model.json", json.dumps(doc).encode())
    lgbm = lgb.LGBMClassifier(n_estimators=3, num_leaves=30, min_child_samples=2, verbose=-1)
    lgbm.fit(X, y)
    for case, (edit, _) in LGB_CASES.items():
        store.publish(case, lgbm, framework="lightgbm")
        text = (version_dir(root, case) / "model.txt").read_text()
        swap(root, case, "model.txt", edit(text).encode())
    code, results, stderr = run_child(CHILD_LOADS, root, cpu_s=60)
    return {"code": code, "results": results, "stderr": stderr}


@pytest.mark.parametrize("case", [*(c for c in XGB_CASES), *(c for c in LGB_CASES)], ids=str)
def test_what_the_library_would_read_differently_is_refused(
    tree_results: dict[str, Any], case: str
) -> None:
    assert tree_results["code"] == 0, _death(tree_results)
    result = tree_results["results"][case]
    message = XGB_CASES[case][2] if case in XGB_CASES else LGB_CASES[case][1]
    assert result["error"] == "UnsafeModelError", result
    assert message in result["message"], result
    assert result["rss_growth"] < 200 << 20, result
    assert result["cpu_s"] < 5, result


CHILD_FUZZ = """
import lightgbm
from hypothesis import HealthCheck, given, settings, strategies as st
from model_store import StoreLimits
from model_store._lightgbm_io import lightgbm_text, load_lightgbm
from model_store.errors import UnsafeModelError

text = open(sys.argv[1] + "/model.txt").read()
X = numpy.load(sys.argv[1] + "/X.npy")
reference = lightgbm.Booster(model_str=text).predict(X)
lines = text.split("\\n")
INT_KEYS = ("num_leaves", "split_feature", "decision_type", "left_child", "right_child",
            "leaf_count", "internal_count")
FLOAT_KEYS = ("threshold", "leaf_value", "leaf_weight", "shrinkage", "internal_value")
slots = []  # (line, token index, is_int)
tree_started = False
for i, line in enumerate(lines):
    tree_started = tree_started or line.startswith("Tree=")
    key, sep, value = line.partition("=")
    if tree_started and sep and value and key in INT_KEYS + FLOAT_KEYS:
        for j in range(len(value.split(" "))):
            slots.append((i, j, key in INT_KEYS))

def int_spellings(v):
    # Every one of these is the same number to Python's float(); LightGBM reads only the
    # leading digits (plain decimal alone means the same to both).
    s = str(abs(v)); sign = "-" if v < 0 else ""
    return [sign + s, sign + s + ".0", sign + s + "e0", sign + s + "0e-1", sign + s + "00e-2",
            sign + "0" + s, ("+" if v >= 0 else "-") + s, sign + s + ".", sign + s + "E0"]

def float_spellings(x):
    return [repr(x), "%.17g" % x, "%.17e" % x, "%.17E" % x, "%.25g" % x, "+%.17g" % x,
            "%.17g" % x + "e0" if "e" not in "%.17g" % x else "%.17g" % x,
            "0" + repr(x) if repr(x)[0].isdigit() else repr(x)]

outcome = {"accepted": 0, "refused": 0, "different": []}

@settings(max_examples=int(sys.argv[4]), derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(slots) - 1), st.integers(0, 8)),
                min_size=1, max_size=4))
def respelt(edits):
    new = list(lines)
    for slot, choice in edits:
        i, j, is_int = slots[slot]
        key, _, value = new[i].partition("=")
        tokens = value.split(" ")
        original = lines[i].partition("=")[2].split(" ")[j]
        if is_int:
            options = int_spellings(int(original))
        else:
            options = float_spellings(float(original))
        tokens[j] = options[choice % len(options)]
        new[i] = key + "=" + " ".join(tokens)
    data = "\\n".join(new).encode()
    try:
        checked, info = lightgbm_text(data, limits=StoreLimits(), name="m", version=None,
                                       filename="model.txt")
    except UnsafeModelError:
        outcome["refused"] += 1
        return
    outcome["accepted"] += 1
    got = load_lightgbm(checked, info, name="m").predict(X)
    if not numpy.array_equal(got, reference):
        outcome["different"].append([slots[s] + (c,) for s, c in edits])

def fuzz():
    respelt()
    print(json.dumps({"outcome": outcome}), flush=True)

run("fuzz", fuzz)
"""


def test_lightgbm_number_spellings_load_as_checked_or_are_refused(tmp_path: Path) -> None:
    """A fuzz over number spellings (each the same number to the check's parser): what
    LightGBM loads predicts exactly what the published model predicts, or it is refused."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + 0.5 * X[:, 2] > 0).astype(int) + (X[:, 1] > 0.5)
    model = lgb.LGBMClassifier(n_estimators=4, num_leaves=8, min_child_samples=2, verbose=-1)
    model.fit(X, y)
    (tmp_path / "model.txt").write_text(model.booster_.model_to_string())
    np.save(tmp_path / "X.npy", X)
    code, results, stderr = run_child(
        CHILD_FUZZ.replace("sys.argv[4]", "150"), tmp_path, cpu_s=120, timeout=240
    )
    outcome = {"code": code, "results": results, "stderr": stderr}
    assert code == 0, _death(outcome)
    assert results["fuzz"]["error"] is None, results["fuzz"]
    found = results["outcome"]
    assert found["different"] == [], found
    assert found["accepted"] > 0 and found["refused"] > 0, found


def test_ubjson_values_are_capped_before_they_are_built() -> None:
    from model_store._refused import Refused
    from model_store._ubjson import parse_ubjson

    empty_objects = b"[" + b"{}" * 100_000 + b"]"
    assert len(parse_ubjson(empty_objects, max_depth=4)) == 100_000
    with pytest.raises(Refused, match="more values than the cap"):
        parse_ubjson(empty_objects, max_depth=4, max_items=50_000)
    typed = b"[$d#l" + (1_000).to_bytes(4, "big") + bytes(4_000)
    with pytest.raises(Refused, match="more values than the cap"):
        parse_ubjson(typed, max_depth=4, max_items=999)


def test_xgboost_ubjson_within_the_caps_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 4))
    booster = xgb.train({"max_depth": 3}, xgb.DMatrix(X, X[:, 0]), 5)
    path = tmp_path / "m.ubj"
    booster.save_model(path)
    store = ModelStore(tmp_path / "store")
    store.publish_file("m", path, framework="xgboost")
    got = store.load("m").predict_outputs(X)
    assert np.array_equal(got.ravel(), booster.inplace_predict(X).astype(np.float64))


def _one_leaf_lightgbm(n_trees: int) -> str:
    head = (
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n"
        "max_feature_idx=3\nobjective=binary sigmoid:1\n"
        "feature_names=Column_0 Column_1 Column_2 Column_3\n\n"
    )
    tree = (
        "Tree={i}\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\n"
        "decision_type=\nleft_child=\nright_child=\nleaf_value=0.25\nleaf_weight=\n"
        "leaf_count=60\nis_linear=0\nshrinkage=1\n\n\n"
    )
    return head + "".join(tree.format(i=i) for i in range(n_trees)) + "end of trees\n"


def test_tree_and_node_counts_are_capped_per_model() -> None:
    import time

    from model_store import StoreLimits, UnsafeModelError
    from model_store._lightgbm_io import lightgbm_text
    from model_store._xgboost_io import xgboost_document

    def lgb_check(text: str, limits: StoreLimits) -> Any:
        return lightgbm_text(
            text.encode(), limits=limits, name="m", version=None, filename="model.txt"
        )

    many = _one_leaf_lightgbm(60_000)  # 3.5 MB; 100,000 such trees held a worker 22.7 s
    start = time.process_time()
    with pytest.raises(UnsafeModelError, match="more than 50000 trees"):
        lgb_check(many, StoreLimits())
    assert time.process_time() - start < 0.5
    assert lgb_check(_one_leaf_lightgbm(3), StoreLimits())[1].n_features == 4
    blank = _one_leaf_lightgbm(3).replace("\n\n", "\n" * 3_000_000, 1)  # 3 MB, 3 M lines
    start = time.process_time()
    with pytest.raises(UnsafeModelError, match="lines, more than a model within the caps"):
        lgb_check(blank, StoreLimits())
    assert time.process_time() - start < 0.5
    with pytest.raises(UnsafeModelError, match="more than 5 nodes"):
        lgb_check(_one_leaf_lightgbm(6), StoreLimits(max_tree_nodes=5))

    rng = np.random.default_rng(5)
    X = rng.normal(size=(100, 4))
    raw = bytes(xgb.train({"max_depth": 2}, xgb.DMatrix(X, X[:, 0]), 4).save_raw("json"))

    def xgb_check(limits: StoreLimits) -> Any:
        return xgboost_document(
            raw, fmt="json", limits=limits, name="m", version=None, filename="model.json"
        )

    assert xgb_check(StoreLimits())[1].n_features == 4
    with pytest.raises(UnsafeModelError, match="num_trees must be an integer in"):
        xgb_check(StoreLimits(max_trees=3))
    with pytest.raises(UnsafeModelError, match="max_tree_nodes"):
        xgb_check(StoreLimits(max_tree_nodes=8))
