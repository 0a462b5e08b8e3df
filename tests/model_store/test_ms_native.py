"""XGBoost, LightGBM and ONNX through the store: equal to the libraries' own predictions on
data sets that ship with scikit-learn, and every refusal names the file and runs nothing."""

from __future__ import annotations

import json
import pickle
import re
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from model_store import (
    IntegrityError,
    MissingDependencyError,
    ModelStore,
    ModelStoreError,
    PublishError,
    UnsafeModelError,
    generate_key,
    read_key,
)

DATA = {
    "breast_cancer": load_breast_cancer(return_X_y=True),
    "iris": load_iris(return_X_y=True),
    "diabetes": load_diabetes(return_X_y=True),
}
CLASSIFICATION = ("breast_cancer", "iris")


def _reference(model: object, X: np.ndarray, data: str) -> np.ndarray:
    if data in CLASSIFICATION:
        return np.asarray(model.predict_proba(X), dtype=np.float64)  # type: ignore[attr-defined]
    return np.asarray(model.predict(X), dtype=np.float64).reshape(len(X), -1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("data", sorted(DATA))
@pytest.mark.parametrize("fmt", ["object", "json", "ubj"])
def test_xgboost_equals_its_own_predict(store: ModelStore, data: str, fmt: str) -> None:
    X, y = DATA[data]
    cls = xgb.XGBClassifier if data in CLASSIFICATION else xgb.XGBRegressor
    model = cls(n_estimators=40, max_depth=4, random_state=0).fit(X, y)
    given = model if fmt == "object" else bytes(model.get_booster().save_raw(fmt))
    store.publish("xgb", given, framework="xgboost")
    loaded = store.load("xgb", threads=1)
    assert loaded.framework == "xgboost"
    assert loaded.task == ("classification" if data in CLASSIFICATION else "regression")
    np.testing.assert_array_equal(loaded.predict_outputs(X), _reference(model, X, data))


def test_xgboost_honours_best_iteration_like_its_wrapper(store: ModelStore) -> None:
    X, y = DATA["breast_cancer"]
    model = xgb.XGBClassifier(n_estimators=200, early_stopping_rounds=3, random_state=0)
    model.fit(X[:400], y[:400], eval_set=[(X[400:], y[400:])], verbose=False)
    assert model.best_iteration < 199
    store.publish("xgb", model, framework="xgboost")
    np.testing.assert_array_equal(store.load("xgb").predict_outputs(X), model.predict_proba(X))


@pytest.mark.parametrize("data", sorted(DATA))
def test_lightgbm_equals_its_own_predict(store: ModelStore, data: str) -> None:
    X, y = DATA[data]
    cls = lgb.LGBMClassifier if data in CLASSIFICATION else lgb.LGBMRegressor
    model = cls(n_estimators=40, random_state=0, verbose=-1).fit(X, y)
    store.publish("lgb", model.booster_.model_to_string(), framework="lightgbm")
    loaded = store.load("lgb", threads=1)
    np.testing.assert_array_equal(loaded.predict_outputs(X), _reference(model, X, data))
    assert loaded.feature_names is None  # LightGBM's own Column_i names are not kept


@pytest.mark.parametrize(
    ("data", "zipmap"),
    [(d, z) for d in sorted(DATA) for z in ((False, True) if d in CLASSIFICATION else (False,))],
)  # a regressor has no ZipMap
def test_onnx_random_forest_within_float32_tolerance(
    store: ModelStore, data: str, zipmap: bool
) -> None:
    X, y = DATA[data]
    if data in CLASSIFICATION:
        model = RandomForestClassifier(30, max_depth=8, random_state=0).fit(X, y)
        options = {id(model): {"zipmap": zipmap}}
    else:
        model = RandomForestRegressor(30, max_depth=8, random_state=0).fit(X, y)
        options = {}
    onx = to_onnx(model, X[:1].astype(np.float32), options=options)
    store.publish("rf_onnx", onx, framework="onnx")
    loaded = store.load("rf_onnx", threads=1)
    out, ref = loaded.predict_outputs(X), _reference(model, X, data)
    # onnxruntime sums the trees in float32: the tolerance docs/model-store.md states.
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()))
    if data in CLASSIFICATION:
        assert loaded.classes == sorted(set(y.tolist()))


def test_published_files_are_checksummed_and_signed(tmp_store: Path, tmp_path: Path) -> None:
    key = read_key(generate_key(tmp_path / "k"))
    store = ModelStore(tmp_store, key=key, require_signature=True)
    X, y = DATA["breast_cancer"]
    store.publish("xgb", xgb.XGBClassifier(n_estimators=3).fit(X, y), framework="xgboost")
    manifest = store.manifest("xgb")
    assert manifest["signed"] is True
    assert set(manifest["files"]) == {"model.json", "published_outputs.npz"}
    assert manifest["library_versions"]["xgboost"] == xgb.__version__


# -- refusals -------------------------------------------------------------------------------


def _xgb_doc() -> dict:
    X, y = DATA["breast_cancer"]
    model = xgb.XGBClassifier(n_estimators=3, max_depth=3).fit(X, y)
    return json.loads(model.get_booster().save_raw("json"))


def _lgb_text() -> str:
    X, y = DATA["breast_cancer"]
    return lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y).booster_.model_to_string()


XGB_BREAKS = {
    "child cycle": lambda t: t["left_children"].__setitem__(t["left_children"][0], 0),
    "child out of range": lambda t: t["right_children"].__setitem__(0, 10_000),
    "shared child": lambda t: t["right_children"].__setitem__(0, t["left_children"][0]),
    "feature out of range": lambda t: t["split_indices"].__setitem__(0, 30),
    "half leaf": lambda t: t["right_children"].__setitem__(len(t["right_children"]) - 1, 0),
    "short array": lambda t: t["split_conditions"].pop(),
    "categorical": lambda t: t["split_type"].__setitem__(0, 1),
}


@pytest.mark.parametrize("how", sorted(XGB_BREAKS))
def test_xgboost_malformed_trees_are_refused(store: ModelStore, how: str) -> None:
    doc = _xgb_doc()
    XGB_BREAKS[how](doc["learner"]["gradient_booster"]["model"]["trees"][0])
    with pytest.raises(UnsafeModelError, match=r"model\.json"):
        store.publish("xgb", json.dumps(doc).encode(), framework="xgboost")
    assert store.models() == []


def test_xgboost_nan_threshold_is_refused(store: ModelStore) -> None:
    doc = _xgb_doc()
    tree = doc["learner"]["gradient_booster"]["model"]["trees"][0]
    tree["split_conditions"][0] = float("nan")
    with pytest.raises(UnsafeModelError, match="not finite"):
        store.publish("xgb", json.dumps(doc).encode(), framework="xgboost")


def _first_token(key: str, value: str):  # type: ignore[no-untyped-def]
    """Set the first value of ``key`` in Tree=0."""

    def edit(text: str) -> str:
        at = text.index(f"\n{key}=", text.index("Tree=0")) + 1
        line = text[at:].split("\n", 1)[0]
        rest = line.split("=", 1)[1].split(" ")
        return text[:at] + f"{key}=" + " ".join([value, *rest[1:]]) + text[at + len(line) :]

    return edit


def _replace(old: str, new: str):  # type: ignore[no-untyped-def]
    return lambda text: text.replace(old, new, 1)


def _blank(key: str):  # type: ignore[no-untyped-def]
    """Empty the value of ``key`` in Tree=0 (as LightGBM writes it for a one-leaf tree)."""

    def edit(text: str) -> str:
        at = text.index(f"\n{key}=", text.index("Tree=0")) + 1
        end = text.index("\n", at)
        return text[:at] + f"{key}=" + text[end:]

    return edit


LGB_BREAKS = {
    "child cycle": _first_token("left_child", "0"),
    "feature out of range": _first_token("split_feature", "99"),
    "leaf out of range": _first_token("right_child", "-99"),
    "nan threshold": _first_token("threshold", "nan"),
    "categorical decision": _first_token("decision_type", "1"),
    "duplicate key": _replace("num_cat=0\n", "num_cat=0\nnum_cat=0\n"),
    "unknown key": _replace("num_cat=0\n", "num_cat=0\nnot_a_key=1\n"),
    "categorical": _replace("num_cat=0\n", "num_cat=1\n"),
    "no end": _replace("end of trees", "the end"),
    "custom objective": _replace("objective=binary sigmoid:1", "objective=lambdarank"),
    "empty leaf_weight on a split tree": _blank("leaf_weight"),
    "empty leaf_count": _blank("leaf_count"),
    "empty split_gain": _blank("split_gain"),
}


@pytest.mark.parametrize("how", sorted(LGB_BREAKS))
def test_lightgbm_malformed_trees_are_refused(store: ModelStore, how: str) -> None:
    broken = LGB_BREAKS[how](_lgb_text())
    assert broken != _lgb_text()
    with pytest.raises(UnsafeModelError, match=r"model\.txt"):
        store.publish("lgb", broken, framework="lightgbm")


def _one_leaf_text() -> str:
    X = np.ones((20, 3))
    params = {"objective": "regression", "verbose": -1}
    return str(lgb.train(params, lgb.Dataset(X, np.arange(20.0)), 3).model_to_string())


def test_lightgbm_one_leaf_trees_are_accepted_as_lightgbm_writes_them(store: ModelStore) -> None:
    text = _one_leaf_text()
    assert "num_leaves=1\n" in text and "\nleaf_weight=\n" in text and "\nsplit_feature=\n" in text
    store.publish("lgb", text, framework="lightgbm")
    expected = lgb.Booster(model_str=text).predict(np.zeros((2, 3)))
    np.testing.assert_array_equal(
        store.load("lgb").predict_outputs(np.zeros((2, 3)))[:, 0], expected
    )


@pytest.mark.parametrize(
    "edit",
    [
        ("\nsplit_feature=\n", "\nsplit_feature=0\n"),
        ("\nleft_child=\n", "\nleft_child=-1\n"),
        ("\nleaf_weight=\n", "\nleaf_weight=1 2\n"),
        ("\nleaf_value=[^\n]*", "\nleaf_value="),
    ],
    ids=["split array", "child array", "two leaf weights", "empty leaf_value"],
)
def test_lightgbm_one_leaf_trees_hold_only_what_lightgbm_writes(
    store: ModelStore, edit: tuple[str, str]
) -> None:
    with pytest.raises(UnsafeModelError, match=r"model\.txt"):
        store.publish("lgb", re.sub(*edit, _one_leaf_text(), count=1), framework="lightgbm")


def test_lightgbm_linear_trees_are_refused_as_such(store: ModelStore) -> None:
    X, y = DATA["diabetes"]
    params = {"objective": "regression", "linear_tree": True, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(X, y), 2)
    with pytest.raises(UnsafeModelError, match="linear trees are not supported"):
        store.publish("lgb", booster, framework="lightgbm")


def test_lightgbm_tree_sizes_are_not_trusted(store: ModelStore) -> None:
    """LightGBM would parse trees at the ``tree_sizes`` offsets; the store drops them."""
    X, _y = DATA["breast_cancer"]
    text = _lgb_text()
    lying = text.replace("tree_sizes=", "tree_sizes=1 ", 1)
    store.publish("lgb", lying, framework="lightgbm")
    model = lgb.Booster(model_str=text)
    expected = np.vstack((1 - model.predict(X), model.predict(X))).T
    np.testing.assert_array_equal(store.load("lgb").predict_outputs(X), expected)


def _onnx(width: int = 30) -> bytes:
    X, y = DATA["breast_cancer"]
    rf = RandomForestClassifier(3, max_depth=3, random_state=0).fit(X[:, :width], y)
    onx = to_onnx(rf, X[:1, :width].astype(np.float32), options={id(rf): {"zipmap": False}})
    return onx.SerializeToString()


def test_onnx_width_must_match_the_declared_one(store: ModelStore) -> None:
    with pytest.raises(PublishError, match="the model takes 30 features, 12 were declared"):
        store.publish("o", _onnx(), framework="onnx", input_schema={"n_features": 12})


def test_onnx_external_data_and_custom_ops_are_refused(store: ModelStore) -> None:
    import onnx

    model = onnx.load_model_from_string(_onnx())
    model.graph.node[0].domain = "my.custom.ops"
    with pytest.raises(UnsafeModelError, match="custom"):
        store.publish("o", model, framework="onnx")
    from onnx import TensorProto, numpy_helper

    model = onnx.load_model_from_string(_onnx())
    weight = numpy_helper.from_array(np.zeros(3, np.float32), "w")
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    weight.external_data.append(onnx.StringStringEntryProto(key="location", value="/etc/passwd"))
    model.graph.initializer.append(weight)
    with pytest.raises(UnsafeModelError, match="external data"):
        store.publish("o", model, framework="onnx")


def test_onnx_tree_with_a_bad_feature_is_refused(store: ModelStore) -> None:
    import onnx
    from onnx import helper

    model = onnx.load_model_from_string(_onnx())
    node = model.graph.node[0]
    for attr in node.attribute:
        if attr.name == "nodes_featureids":
            attr.CopyFrom(helper.make_attribute("nodes_featureids", [999] * len(attr.ints)))
    with pytest.raises(UnsafeModelError, match="outside"):
        store.publish("o", model, framework="onnx")


@pytest.mark.parametrize(
    ("framework", "filename"),
    [
        ("sklearn", "model.skops"),
        ("torch", "model.safetensors"),
        ("xgboost", "model.json"),
        ("xgboost", "model.ubj"),
        ("lightgbm", "model.txt"),
        ("onnx", "model.onnx"),
    ],
)
def test_a_pickle_is_refused_under_every_accepted_extension(
    store: ModelStore, tmp_path: Path, framework: str, filename: str
) -> None:
    path = tmp_path / filename
    path.write_bytes(pickle.dumps(RandomForestClassifier()))
    with pytest.raises(ModelStoreError, match=filename.replace(".", r"\.")):
        store.publish_file("m", path, framework=framework, spec_path=tmp_path / "spec.json")
    assert store.models() == []


@pytest.mark.parametrize("ext", [".pkl", ".pickle", ".joblib"])
def test_pickle_extensions_are_refused_with_the_way_to_convert(
    store: ModelStore, tmp_path: Path, ext: str
) -> None:
    path = tmp_path / f"model{ext}"
    path.write_bytes(b"never read")
    with pytest.raises(PublishError, match=r"skops\.io\.dump"):
        store.publish_file("m", path, framework="sklearn")


def test_an_xgboost_file_that_is_not_json_or_ubj(store: ModelStore, tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_bytes(_lgb_text().encode())
    with pytest.raises(UnsafeModelError, match="not a valid XGBoost JSON model"):
        store.publish_file("m", path, framework="xgboost")
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00\x01")
    with pytest.raises(PublishError, match=r"\.json or \.ubj"):
        store.publish_file("m", path, framework="xgboost")


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm", "onnx"])
def test_a_tampered_file_is_refused_on_load(store: ModelStore, framework: str) -> None:
    X, y = DATA["breast_cancer"]
    model = {
        "xgboost": lambda: xgb.XGBClassifier(n_estimators=3).fit(X, y),
        "lightgbm": lambda: lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y),
        "onnx": lambda: _onnx(),
    }[framework]()
    store.publish("m", model, framework=framework)
    ignored = {"manifest.json", "published_outputs.npz"}
    (path,) = [p for p in (store.root / "m" / "1").iterdir() if p.name not in ignored]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=path.name.replace(".", r"\.")):
        store.load("m")


@pytest.mark.parametrize(
    ("framework", "module"), [("xgboost", "xgboost"), ("lightgbm", "lightgbm"), ("onnx", "onnx")]
)
def test_a_missing_package_names_the_extra(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch, framework: str, module: str
) -> None:
    X, y = DATA["breast_cancer"]
    model = {
        "xgboost": lambda: xgb.XGBClassifier(n_estimators=3).fit(X, y),
        "lightgbm": lambda: lgb.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, y),
        "onnx": lambda: _onnx(),
    }[framework]()
    store.publish("m", model, framework=framework)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'streamfuse\[{framework}\]'"):
        store.load("m")
