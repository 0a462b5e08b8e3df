"""The acceptance side of the native formats: models LightGBM and XGBoost write themselves.

A grid of small data sets (binary, multiclass, regression; tiny, separable, constant
features, constant everywhere) and training parameters (depths, leaves, ``min_data_in_leaf``
big enough for one-leaf trees, early stopping, ``num_class``, every objective the store
accepts, LightGBM's dart, rf and goss, XGBoost's dart). Each model is published through
:meth:`ModelStore.publish`, loaded, and must predict what its own library predicts. The
refusal side is the hostile corpus (``test_ms_hostile.py``) and the malformed-tree cases of
``test_ms_native.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from model_store import ModelStore
from model_store import _lightgbm_io as lightgbm_io

# -- data -----------------------------------------------------------------------------------


def _features(shape: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    if shape == "constant":
        X[:, 1] = 3.0  # two constant features beside two informative ones
        X[:, 3] = -1.0
    elif shape == "all_constant":
        X[:] = 1.0  # nothing to split on: every tree is one leaf
    return X


def _target(task: str, shape: str, X: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    signal = X[:, 0] if shape != "all_constant" else rng.normal(size=len(X))
    if shape != "separable":
        signal = signal + 0.5 * rng.normal(size=len(X))
    if task == "binary":
        y = (signal > np.median(signal)).astype(np.int64)
    elif task == "multiclass":
        y = np.searchsorted(np.quantile(signal, [1 / 3, 2 / 3]), signal).astype(np.int64)
    else:
        y = signal + 0.3 * X[:, 2]
    return y


SHAPES = {"tiny": 9, "separable": 60, "constant": 60, "all_constant": 30}


def _data(task: str, shape: str) -> tuple[np.ndarray, np.ndarray]:
    X = _features(shape, SHAPES[shape], seed=len(shape))
    return X, _target(task, shape, X, seed=len(shape))


def _queries(X: np.ndarray) -> np.ndarray:
    """The training rows and rows beyond their range (every branch taken both ways)."""
    rng = np.random.default_rng(7)
    return np.vstack([X, 3.0 * rng.normal(size=(20, X.shape[1])), X.min(0) - 1, X.max(0) + 1])


def _regression_target(objective: str, y: np.ndarray) -> np.ndarray:
    """Targets each objective accepts: positive counts and amounts, [0, 1] for cross
    entropy and reg:logistic."""
    if objective in ("poisson", "gamma", "tweedie", "mape", "count:poisson", "reg:gamma",
                     "reg:tweedie", "reg:squaredlogerror"):  # fmt: skip
        return np.exp(0.5 * (y - y.mean()) / (y.std() or 1.0)) + 0.1
    if objective in ("cross_entropy", "cross_entropy_lambda", "reg:logistic"):
        return 1.0 / (1.0 + np.exp(-(y - y.mean())))
    return y


# -- the grid -------------------------------------------------------------------------------

LGB_PARAMS: dict[str, dict[str, Any]] = {
    "leaves7": {"num_leaves": 7, "min_data_in_leaf": 1, "min_data_in_bin": 1},
    "stumps": {"num_leaves": 2, "max_depth": 1, "min_data_in_leaf": 2},
    "min_data_20": {"num_leaves": 31, "min_data_in_leaf": 20},  # one-leaf trees on small data
    "depth2_early_stop": {"num_leaves": 4, "max_depth": 2, "min_data_in_leaf": 3},
}
LGB_BOOSTING: dict[str, dict[str, Any]] = {
    "dart": {"boosting": "dart", "num_leaves": 4, "min_data_in_leaf": 2},
    "rf": {"boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.5, "num_leaves": 4},
    "goss": {"data_sample_strategy": "goss", "num_leaves": 4, "min_data_in_leaf": 2},
}
# Every regression objective the store claims ("regression" itself is in the grid above).
LGB_REGRESSION_OBJECTIVES = tuple(o for o in lightgbm_io._REGRESSION if o != "regression")
XGB_PARAMS: dict[str, dict[str, Any]] = {
    "depth1": {"max_depth": 1},
    "depth4": {"max_depth": 4, "min_child_weight": 0.0},
    "leafy_early_stop": {"max_depth": 3, "min_child_weight": 50.0},  # root-only trees
}
XGB_REGRESSION_OBJECTIVES = (
    "reg:absoluteerror",
    "reg:pseudohubererror",
    "reg:squaredlogerror",
    "reg:logistic",
    "count:poisson",
    "reg:gamma",
    "reg:tweedie",
    "reg:quantileerror",
    "survival:cox",
)


def _cases() -> Iterator[Any]:
    for shape in SHAPES:
        for task in ("binary", "multiclass", "regression"):
            objectives = {"binary": ["binary"], "multiclass": ["multiclass", "multiclassova"]}
            for objective in objectives.get(task, ["regression"]):
                for params in LGB_PARAMS:
                    yield pytest.param("lightgbm", task, shape, objective, params,
                                       id=f"lgb-{objective}-{shape}-{params}")  # fmt: skip
            xgb_objective = {"binary": "binary:logistic", "multiclass": "multi:softprob"}
            for params in XGB_PARAMS:
                yield pytest.param("xgboost", task, shape, xgb_objective.get(task,
                                   "reg:squarederror"), params,
                                   id=f"xgb-{task}-{shape}-{params}")  # fmt: skip
    for objective in LGB_REGRESSION_OBJECTIVES:  # with splits, and one leaf per tree
        for shape, params in (("constant", "leaves7"), ("tiny", "min_data_20")):
            yield pytest.param("lightgbm", "regression", shape, objective, params,
                               id=f"lgb-{objective}-{shape}-{params}")  # fmt: skip
    for objective in XGB_REGRESSION_OBJECTIVES:
        yield pytest.param("xgboost", "regression", "constant", objective, "depth4",
                           id=f"xgb-{objective}-constant-depth4")  # fmt: skip
    for task in ("binary", "regression"):
        yield pytest.param("xgboost", task, "constant", "dart", "depth4",
                           id=f"xgb-dart-{task}-constant")  # fmt: skip
    for task, objective in (("binary", "binary"), ("multiclass", "multiclass"),
                            ("regression", "regression")):  # fmt: skip
        for params in LGB_BOOSTING:
            yield pytest.param("lightgbm", task, "constant", objective, params,
                               id=f"lgb-{objective}-constant-{params}")  # fmt: skip


# -- training, with each library's own reference ---------------------------------------------


def _train_lightgbm(
    task: str, objective: str, params: str, X: np.ndarray, y: np.ndarray
) -> tuple[Any, np.ndarray]:
    """A Booster and what it predicts for ``_queries(X)`` (``[1 - p, p]`` when binary)."""
    full = {"objective": objective, "verbose": -1, "num_threads": 1, "seed": 0,
            **{**LGB_PARAMS, **LGB_BOOSTING}[params]}  # fmt: skip
    if task == "multiclass":
        full["num_class"] = 3
    rounds, callbacks, valid = 8, [], []
    if params.endswith("early_stop"):
        rounds, callbacks = 40, [lgb.early_stopping(2, verbose=False)]
        valid = [lgb.Dataset(X[::-1] + 0.1, y[::-1])]
    booster = lgb.train(full, lgb.Dataset(X, y), rounds, valid_sets=valid, callbacks=callbacks)
    out = np.asarray(booster.predict(_queries(X)), dtype=np.float64)
    if task == "binary":
        out = np.column_stack([1.0 - out, out])
    return booster, out.reshape(len(out), -1)


def _train_xgboost(
    task: str, objective: str, params: str, X: np.ndarray, y: np.ndarray
) -> tuple[Any, np.ndarray]:
    """A scikit-learn wrapper (its ``best_iteration`` is what the store honours) and what it
    predicts for ``_queries(X)``."""
    full: dict[str, Any] = {"n_estimators": 6, "n_jobs": 1, "random_state": 0,
                            **XGB_PARAMS[params]}  # fmt: skip
    if objective == "dart":
        full.update(booster="dart", rate_drop=0.3, one_drop=1)
    elif task == "regression":
        full["objective"] = objective
        if objective == "reg:quantileerror":
            full["quantile_alpha"] = 0.5
    fit: dict[str, Any] = {"verbose": False}
    if params.endswith("early_stop"):
        full.update(n_estimators=40, early_stopping_rounds=2)
        fit["eval_set"] = [(X[::-1] + 0.1, y[::-1])]
    cls = xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier
    model = cls(**full).fit(X, y, **fit)
    Q = _queries(X)
    out = model.predict(Q) if task == "regression" else model.predict_proba(Q)
    return model, np.asarray(out, dtype=np.float64).reshape(len(Q), -1)


@pytest.mark.parametrize(("library", "task", "shape", "objective", "params"), list(_cases()))
def test_a_model_the_library_wrote_is_served_as_the_library_predicts(
    store: ModelStore, library: str, task: str, shape: str, objective: str, params: str
) -> None:
    X, y = _data(task, shape)
    if task == "regression":
        y = _regression_target(objective, y)
    train = _train_lightgbm if library == "lightgbm" else _train_xgboost
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # XGBoost on constant data, LightGBM's "no split"
        model, expected = train(task, objective, params, X, y)
    store.publish("m", model, framework=library)
    loaded = store.load("m", threads=1)
    assert loaded.task == ("regression" if task == "regression" else "classification")
    np.testing.assert_allclose(loaded.predict_outputs(_queries(X)), expected, rtol=0, atol=1e-6)
