"""Publishing and loading scikit-learn models."""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings

import numpy as np
import pytest
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model_store import (
    TRUSTED_TYPES,
    InputShapeError,
    LoadedModel,
    ModelStore,
    PublishError,
    UnsafeModelError,
)


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny data: convergence warnings are expected
        return model.fit(X, y)


CLASSIFIERS = {
    "rf": lambda: RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0),
    "hgb": lambda: HistGradientBoostingClassifier(max_iter=5, random_state=0),
    "logreg": lambda: LogisticRegression(),
    "mlp": lambda: MLPClassifier(hidden_layer_sizes=(6,), max_iter=50, random_state=0),
    "pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression()),
}
REGRESSORS = {
    "ridge": lambda: Ridge(alpha=0.5),
    "hgb_reg": lambda: HistGradientBoostingRegressor(max_iter=5, random_state=0),
    "rf_reg": lambda: RandomForestRegressor(n_estimators=3, max_depth=3, random_state=0),
}


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_classifier_round_trip(store: ModelStore, clf_data, kind: str) -> None:
    X, y = clf_data
    model = _fit(CLASSIFIERS[kind](), X, y)
    version = store.publish(kind, model, scores={"accuracy": 0.75})
    assert version == 1
    assert store.versions(kind) == [1]

    loaded = store.load(kind)
    assert isinstance(loaded, LoadedModel)
    assert (loaded.name, loaded.version, loaded.framework) == (kind, 1, "sklearn")
    assert (loaded.task, loaded.n_features, loaded.n_outputs) == ("classification", 4, 3)
    assert loaded.classes == ["cat", "dog", "eel"]
    out = loaded.predict_outputs(X)
    assert out.dtype == np.float64 and out.shape == (60, 3)
    np.testing.assert_array_equal(out, model.predict_proba(X))


@pytest.mark.parametrize("kind", sorted(REGRESSORS))
def test_regressor_round_trip(store: ModelStore, reg_data, kind: str) -> None:
    X, y = reg_data
    model = _fit(REGRESSORS[kind](), X, y)
    store.publish(kind, model)
    loaded = store.load(kind, 1)
    assert (loaded.task, loaded.classes, loaded.n_outputs) == ("regression", None, 1)
    assert loaded.manifest["output_kind"] == "value"
    out = loaded.predict_outputs(X)
    assert out.shape == (60, 1) and out.dtype == np.float64
    np.testing.assert_array_equal(out[:, 0], model.predict(X))


def test_multi_output_regression(store: ModelStore, reg_data) -> None:
    X, y = reg_data
    Y = np.c_[y, 2 * y]
    model = _fit(Ridge(), X, Y)
    store.publish("ridge2", model)
    loaded = store.load("ridge2")
    assert loaded.n_outputs == 2
    np.testing.assert_array_equal(loaded.predict_outputs(X), model.predict(X))


def test_classes_permutation_reorders_columns(store: ModelStore, clf_data) -> None:
    X, y = clf_data
    model = _fit(LogisticRegression(), X, y)
    store.publish("lr", model, classes=["eel", "cat", "dog"])
    loaded = store.load("lr")
    assert loaded.classes == ["eel", "cat", "dog"]
    np.testing.assert_array_equal(loaded.predict_outputs(X), model.predict_proba(X)[:, [2, 0, 1]])


def test_manifest_contents(store: ModelStore, clf_data) -> None:
    X, y = clf_data
    model = _fit(LogisticRegression(), X, y)
    names = ["a", "b", "c", "d"]
    store.publish(
        "lr",
        model,
        input_schema={"n_features": 4, "feature_names": names},
        output_kind="proba",
        scores={"accuracy": np.float32(0.5)},
    )
    manifest = store.manifest("lr")
    assert manifest["name"] == "lr" and manifest["version"] == 1
    assert manifest["framework"] == "sklearn"
    assert manifest["input_schema"] == {"n_features": 4, "feature_names": names}
    assert manifest["task"] == "classification" and manifest["output_kind"] == "proba"
    assert manifest["classes"] == ["cat", "dog", "eel"]
    assert manifest["scores"] == {"accuracy": 0.5}
    assert manifest["spec"] is None
    assert set(manifest["library_versions"]) >= {"python", "numpy", "sklearn", "torch", "skops"}
    assert dt.datetime.fromisoformat(manifest["created"]).tzinfo is not None
    files = {f: (store.root / "lr" / "1" / f).read_bytes() for f in manifest["files"]}
    assert manifest["files"] == {
        f: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for f, data in files.items()
    }
    assert set(files) == {"model.skops", "published_outputs.npz"}
    assert store.load("lr").feature_names == names


def test_predict_outputs_checks_shape(store: ModelStore, clf_data) -> None:
    X, y = clf_data
    store.publish("lr", _fit(LogisticRegression(), X, y))
    loaded = store.load("lr")
    with pytest.raises(InputShapeError, match=r"\(n_events, 4\)"):
        loaded.predict_outputs(X[:, :3])
    with pytest.raises(InputShapeError):
        loaded.predict_outputs(X[0])
    assert loaded.predict_outputs(np.empty((0, 4))).shape == (0, 3)


def test_publish_refuses_untrusted_estimator(store: ModelStore, clf_data) -> None:
    X, y = clf_data
    model = _fit(KNeighborsClassifier(n_neighbors=3), X, y)
    with pytest.raises(UnsafeModelError, match="KNeighborsClassifier") as info:
        store.publish("knn", model)
    assert info.value.type_name is not None and "KNeighborsClassifier" in info.value.type_name
    assert store.versions("knn") == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_schema": {"n_features": 5}}, "takes 4 features, 5 were declared"),
        ({"classes": ["cat", "dog", "fox"]}, "not the model's"),
        ({"task": "multitask"}, "single-task"),
        ({"framework": "caffe"}, "framework"),
        ({"output_kind": "value"}, "output_kind"),
        ({"scores": {"accuracy": "high"}}, "scores"),
        ({"input_schema": {"n_features": 4, "feature_names": ["a"]}}, "feature_names"),
    ],
)
def test_publish_validates_arguments(store: ModelStore, clf_data, kwargs, match) -> None:
    X, y = clf_data
    model = _fit(LogisticRegression(), X, y)
    with pytest.raises(PublishError, match=match):
        store.publish("lr", model, **kwargs)
    assert store.versions("lr") == []


def test_allowlist_covers_what_skops_flags(clf_data, reg_data) -> None:
    """Every type skops itself would not trust in our models is on the store's list."""
    import skops.io as sio

    X, y = clf_data
    Xr, yr = reg_data
    models = [_fit(f(), X, y) for f in CLASSIFIERS.values()]
    models += [_fit(f(), Xr, yr) for f in REGRESSORS.values()]
    for model in models:
        assert set(sio.get_untrusted_types(data=sio.dumps(model))) <= TRUSTED_TYPES
