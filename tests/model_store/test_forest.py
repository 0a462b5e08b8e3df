"""The forest fast path: bit-for-bit scikit-learn's own results, or no fast path at all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)

from model_store import ModelStore, _forest
from model_store._forest import forest_predictor
from model_store._sklearn_io import make_sklearn_predictor

SMALL = {"n_estimators": 20, "random_state": 0}

# scikit-learn's own warnings for input beyond float32's range, which it then refuses
sklearn_overflow_warnings = pytest.mark.filterwarnings(
    "ignore:overflow encountered in cast:RuntimeWarning",
    "ignore:invalid value encountered in reduce:RuntimeWarning",
)


def _binary() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n_samples=300, n_features=10, random_state=0)


def _multiclass() -> tuple[np.ndarray, np.ndarray]:
    return make_classification(
        n_samples=400, n_features=12, n_informative=6, n_classes=4, random_state=1
    )


def _digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def _separable() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 4))
    return X, (X[:, 0] > 0).astype(int)


MakeData = Callable[[], tuple[np.ndarray, np.ndarray]]

CLASSIFIER_CASES: dict[str, tuple[Callable[[], Any], MakeData]] = {
    "rf_binary": (lambda: RandomForestClassifier(max_depth=6, **SMALL), _binary),
    "rf_multiclass": (lambda: RandomForestClassifier(max_depth=8, **SMALL), _multiclass),
    "rf_digits": (lambda: RandomForestClassifier(max_depth=10, **SMALL), _digits),
    "rf_unlimited_depth": (lambda: RandomForestClassifier(max_depth=None, **SMALL), _multiclass),
    "rf_no_bootstrap": (lambda: RandomForestClassifier(bootstrap=False, **SMALL), _binary),
    "rf_class_weight": (
        lambda: RandomForestClassifier(max_depth=6, class_weight="balanced_subsample", **SMALL),
        _multiclass,
    ),
    "rf_min_leaf_max_features": (
        lambda: RandomForestClassifier(min_samples_leaf=5, max_features=0.3, **SMALL),
        _digits,
    ),
    "rf_entropy_max_samples": (
        lambda: RandomForestClassifier(criterion="entropy", max_samples=0.5, **SMALL),
        _binary,
    ),
    "et_multiclass": (lambda: ExtraTreesClassifier(max_depth=8, **SMALL), _multiclass),
    "et_class_weight": (
        lambda: ExtraTreesClassifier(class_weight="balanced", **SMALL),
        _digits,
    ),
}


@pytest.fixture(scope="module", params=sorted(CLASSIFIER_CASES))
def fitted_classifier(request: pytest.FixtureRequest) -> tuple[Any, np.ndarray]:
    make_model, make_data = CLASSIFIER_CASES[request.param]
    X, y = make_data()
    return make_model().fit(X, y), X


@pytest.fixture(scope="module")
def rf() -> tuple[RandomForestClassifier, np.ndarray]:
    X, y = _binary()
    return RandomForestClassifier(max_depth=6, **SMALL).fit(X, y), X


def _equal_predictions(predict: Callable[[Any], np.ndarray], expected: Callable[[Any], Any], X):
    got, want = predict(X), expected(X)
    assert got.dtype == want.dtype == np.float64
    assert got.shape == want.shape
    assert np.array_equal(got, want)


def test_classifiers_are_bit_for_bit_equal(fitted_classifier) -> None:
    model, X = fitted_classifier
    predict = forest_predictor(model)
    assert predict is not None
    for batch in (X, X[:1], X[:64], X[7:8]):
        _equal_predictions(predict, model.predict_proba, batch)


def test_pure_leaves_give_exact_zeros_and_ones() -> None:
    X, y = _separable()
    model = RandomForestClassifier(bootstrap=False, max_features=None, **SMALL).fit(X, y)
    predict = forest_predictor(model)
    assert predict is not None
    out = predict(X)
    assert set(np.unique(out)) == {0.0, 1.0}
    assert np.array_equal(out, model.predict_proba(X))


@pytest.mark.parametrize(
    "model",
    [
        RandomForestRegressor(max_depth=6, **SMALL),
        RandomForestRegressor(max_depth=None, bootstrap=False, **SMALL),
        ExtraTreesRegressor(max_depth=8, **SMALL),
    ],
    ids=["rf", "rf_unlimited_no_bootstrap", "et"],
)
def test_regressors_are_bit_for_bit_equal(model) -> None:
    X, y = make_regression(n_samples=300, n_features=8, noise=1.0, random_state=0)
    model.fit(X, y)
    predict = forest_predictor(model, "predict")
    assert predict is not None
    for batch in (X, X[:1], X[:64]):
        _equal_predictions(predict, model.predict, batch)


@pytest.mark.parametrize(
    "convert",
    [
        lambda X: X.astype(np.float32),
        lambda X: np.round(X * 10).astype(np.int64),
        lambda X: np.round(X).astype(np.int8),
        lambda X: X > 0,
        lambda X: np.asfortranarray(X),
        lambda X: X[::3],
        lambda X: np.hstack([X, X])[:, ::2],
        lambda X: X.astype(np.float32)[::2, :],
    ],
    ids=["float32", "int64", "int8", "bool", "fortran", "row_stride", "column_stride", "f32_view"],
)
def test_input_dtypes_and_layouts(rf, convert) -> None:
    model, X = rf
    predict = forest_predictor(model)
    assert predict is not None
    _equal_predictions(predict, model.predict_proba, convert(X))


def test_input_is_not_modified(rf) -> None:
    model, X = rf
    predict = forest_predictor(model)
    assert predict is not None
    X_before = X.copy()
    predict(X)
    assert np.array_equal(X, X_before)


def test_missing_values_give_what_sklearn_gives() -> None:
    X, y = _binary()
    X = X.copy()
    X[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
    model = RandomForestClassifier(max_depth=6, **SMALL).fit(X, y)
    predict = forest_predictor(model)
    assert predict is not None
    assert np.isnan(X[:64]).any()
    _equal_predictions(predict, model.predict_proba, X[:64])
    _equal_predictions(predict, model.predict_proba, np.nan_to_num(X[:64]))


@pytest.mark.parametrize(
    "bad",
    [
        lambda X: np.where(X > 1, np.inf, X),
        lambda X: X * 1e300,  # finite in float64, infinite in float32
        lambda X: X[:0],
        lambda X: X[:, :3],
        lambda X: X[0],
    ],
    ids=["inf", "float32_overflow", "no_rows", "few_features", "one_dimensional"],
)
@sklearn_overflow_warnings
def test_input_sklearn_refuses_is_refused_the_same_way(rf, bad) -> None:
    model, X = rf
    predict = forest_predictor(model)
    assert predict is not None
    with pytest.raises(ValueError) as from_sklearn:
        model.predict_proba(bad(X))
    with pytest.raises(ValueError) as from_fast_path:
        predict(bad(X))
    assert str(from_fast_path.value) == str(from_sklearn.value)


@given(
    X=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 20), st.just(10)),
        elements=st.floats(allow_nan=True, allow_infinity=False, width=64),
    )
)
@settings(max_examples=40, deadline=None)
@sklearn_overflow_warnings
def test_any_finite_or_missing_input(rf, X: np.ndarray) -> None:
    model, _ = rf
    predict = forest_predictor(model)
    assert predict is not None
    try:
        want = model.predict_proba(X)
    except ValueError:  # values beyond float32's range
        with pytest.raises(ValueError):
            predict(X)
        return
    assert np.array_equal(predict(X), want)


def test_hundred_trees_depth_twelve() -> None:
    X, y = make_classification(n_samples=2000, n_features=32, random_state=0)
    model = RandomForestClassifier(100, max_depth=12, random_state=0, n_jobs=1).fit(X, y)
    predict = forest_predictor(model)
    assert predict is not None
    for n_events in (1, 64, 256, 512):
        _equal_predictions(predict, model.predict_proba, X[:n_events])


def test_make_sklearn_predictor_takes_the_fast_path(rf) -> None:
    model, X = rf
    want = model.predict_proba(X)
    predictor = make_sklearn_predictor(model, task="classification", classes=None, n_outputs=2)
    reordered = make_sklearn_predictor(model, task="classification", classes=[1, 0], n_outputs=2)

    def refuse(X: Any) -> np.ndarray:
        raise RuntimeError("sklearn predict_proba called")

    model.predict_proba = refuse  # instance attribute: the fast path never looks it up
    try:
        assert np.array_equal(predictor(X), want)
        assert np.array_equal(reordered(X), want[:, ::-1])
        with pytest.raises(RuntimeError):  # missing values go to the estimator, per call
            predictor(np.full_like(X[:2], np.nan))
    finally:
        del model.predict_proba


def test_make_sklearn_predictor_regression_takes_the_fast_path() -> None:
    X, y = make_regression(n_samples=200, n_features=6, random_state=0)
    model = RandomForestRegressor(max_depth=6, **SMALL).fit(X, y)
    want = model.predict(X).reshape(-1, 1)
    predictor = make_sklearn_predictor(model, task="regression", classes=None, n_outputs=1)
    model.predict = None  # the fast path never looks it up for finite input
    try:
        assert np.array_equal(predictor(X), want)
    finally:
        del model.predict


def test_published_and_loaded_forest(store: ModelStore) -> None:
    X, y = _multiclass()
    labels = np.array(["a", "b", "c", "d"])[y]
    model = RandomForestClassifier(max_depth=8, **SMALL).fit(X, labels)
    store.publish("rf", model)
    loaded = store.load("rf")
    assert forest_predictor(loaded.estimator) is not None
    assert np.array_equal(loaded.predict_outputs(X), model.predict_proba(X))
    assert np.array_equal(loaded.predict_outputs(X[:1]), model.predict_proba(X[:1]))
    assert loaded.predict_outputs(X[:0]).shape == (0, 4)


def _multi_output(model: Any) -> Any:
    X, y = _binary()
    return model.fit(X, np.column_stack([y, 1 - y]))


class _MyForest(RandomForestClassifier):
    pass


@pytest.mark.parametrize(
    ("make_model", "method"),
    [
        (lambda: RandomForestClassifier(**SMALL), "predict_proba"),  # not fitted
        (lambda: RandomForestClassifier(n_jobs=2, **SMALL).fit(*_binary()), "predict_proba"),
        (lambda: _multi_output(RandomForestClassifier(**SMALL)), "predict_proba"),
        (lambda: _multi_output(RandomForestRegressor(**SMALL)), "predict"),
        (lambda: _MyForest(**SMALL).fit(*_binary()), "predict_proba"),
        (lambda: HistGradientBoostingClassifier(max_iter=5).fit(*_binary()), "predict_proba"),
        (lambda: RandomForestClassifier(**SMALL).fit(*_binary()), "predict"),
        (lambda: RandomForestRegressor(**SMALL).fit(*_binary()), "predict_proba"),
        (lambda: RandomForestClassifier(**SMALL).fit(*_binary()), "apply"),
    ],
    ids=[
        "unfitted",
        "n_jobs",
        "multi_output",
        "multi_output_regressor",
        "subclass",
        "not_a_forest",
        "classifier_predict",
        "regressor_predict_proba",
        "other_method",
    ],
)
def test_unsupported_estimators_get_no_fast_path(make_model, method: str) -> None:
    assert forest_predictor(make_model(), method) is None


def test_unknown_sklearn_version_gets_no_fast_path(rf, monkeypatch: pytest.MonkeyPatch) -> None:
    model, X = rf
    monkeypatch.setattr(_forest, "SUPPORTED_SKLEARN", frozenset())
    assert forest_predictor(model) is None
    predictor = make_sklearn_predictor(model, task="classification", classes=None, n_outputs=2)
    assert np.array_equal(predictor(X), model.predict_proba(X))


def test_disagreement_on_the_probe_rows_gets_no_fast_path(
    rf, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = rf
    real = model.predict_proba
    monkeypatch.setattr(model, "predict_proba", lambda X: real(X)[:, ::-1])
    assert forest_predictor(model) is None
