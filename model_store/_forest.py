"""An exact fast path for scikit-learn random forests and extra-trees.

``ForestClassifier.predict_proba`` (and ``ForestRegressor.predict``) pays a fixed Python cost
per tree on every call: a joblib ``Parallel`` dispatch even with ``n_jobs=1``, and in each
tree ``check_is_fitted``, a feature-count check and a new estimator built to read its tags.
For a 100-tree forest that is milliseconds per call, all of it holding the GIL, while the
traversal itself (``Tree.predict``, Cython) is cheap and releases it.

:func:`forest_predictor` replicates scikit-learn 1.9's own steps once per call and then
calls each tree's ``tree_.predict`` directly, so the result is bit-for-bit the same:

1. ``X`` is converted to float32 with ``np.asarray`` (what ``check_array`` does) and checked
   finite after conversion; anything else (NaN, inf, a float64 too large for float32, sparse,
   object or complex dtype, the wrong shape, no rows) goes to the estimator's own method,
   which handles it or raises exactly as before.
2. ``out = zeros((n_events, n_classes))``; for each tree in ``estimators_`` order,
   ``out += tree_.predict(X)[:, :n_classes_]`` (regressors: ``[:, 0]``), which is what
   ``_accumulate_prediction`` adds with one job; then ``out /= n_estimators``.

In scikit-learn 1.9 ``tree_.value`` already holds class fractions and
``DecisionTreeClassifier.predict_proba`` does not normalise (older versions did): there is
nothing else to copy.
The fast path is refused (``None``) unless the scikit-learn minor version is one whose source
was read for this, the estimator and its trees are exactly the stock classes, there is one
output and ``n_jobs`` is ``None`` or 1 (with more jobs scikit-learn adds the trees in
completion order; a joblib ``parallel_config(n_jobs=...)`` around the call is not looked at,
the fast path always gives the one-job order). A last check compares both paths on probe
rows built from the trees' thresholds.

Unlike ``predict_proba``, the fast path does not warn when ``X`` lacks the feature names the
estimator was fitted with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["forest_predictor"]

#: scikit-learn ``(major, minor)`` versions whose forest prediction code this replicates.
SUPPORTED_SKLEARN: frozenset[tuple[int, int]] = frozenset({(1, 9)})

_N_PROBE_EVENTS = 64


def _sklearn_version() -> tuple[int, int] | None:
    import sklearn

    try:
        major, minor = sklearn.__version__.split(".")[:2]
        return int(major), int(minor)
    except ValueError:  # not "major.minor...": an unknown version, no fast path
        return None


def _trees(estimator: Any, method: str) -> list[Any] | None:
    """The fitted trees if ``estimator`` is a forest the fast path replicates, else None."""
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import (
        DecisionTreeClassifier,
        DecisionTreeRegressor,
        ExtraTreeClassifier,
        ExtraTreeRegressor,
    )

    if method == "predict_proba":
        forests: tuple[type, ...] = (RandomForestClassifier, ExtraTreesClassifier)
        tree_types: tuple[type, ...] = (DecisionTreeClassifier, ExtraTreeClassifier)
    elif method == "predict":
        forests = (RandomForestRegressor, ExtraTreesRegressor)
        tree_types = (DecisionTreeRegressor, ExtraTreeRegressor)
    else:
        return None
    if _sklearn_version() not in SUPPORTED_SKLEARN or type(estimator) not in forests:
        return None
    trees = getattr(estimator, "estimators_", None)
    if not trees or getattr(estimator, "n_outputs_", None) != 1:
        return None
    if estimator.n_jobs not in (None, 1):
        return None
    n_features = estimator.n_features_in_
    for tree in trees:
        if (
            type(tree) not in tree_types
            or tree.n_outputs_ != 1
            or tree.tree_.n_outputs != 1
            or tree.n_features_in_ != n_features
        ):
            return None
        if method == "predict_proba" and tree.n_classes_ != estimator.n_classes_:
            return None
    return list(trees)


def _as_float32(X: Any, n_features: int) -> np.ndarray | None:
    """``X`` as scikit-learn's forests see it, or None where their own checks must decide."""
    if not (
        type(X) is np.ndarray
        and X.ndim == 2
        and X.shape[0] > 0
        and X.shape[1] == n_features
        and X.dtype.kind in "biuf"
    ):
        return None
    with np.errstate(over="ignore"):  # overflow to inf: scikit-learn warns, then refuses
        X32 = np.asarray(X, dtype=np.float32)
    if not np.isfinite(X32).all():
        return None
    return X32


def _probe_events(trees: list[Any], n_features: int) -> np.ndarray:
    """Rows whose values sit on, just below and just above the trees' split thresholds."""
    rng = np.random.default_rng(0)
    features = np.concatenate([tree.tree_.feature for tree in trees])
    thresholds = np.concatenate([tree.tree_.threshold for tree in trees])
    X = rng.normal(size=(_N_PROBE_EVENTS, n_features))
    for j in range(n_features):
        values = thresholds[(features == j) & np.isfinite(thresholds)]
        if values.size:
            X[:, j] = rng.choice(values, _N_PROBE_EVENTS)
            X[:, j] += rng.choice([-1e-4, 0.0, 1e-4], _N_PROBE_EVENTS) * np.abs(X[:, j])
    return np.clip(X, -1e38, 1e38)


def forest_predictor(
    estimator: Any, method: str = "predict_proba"
) -> Callable[[np.ndarray], np.ndarray] | None:
    """A drop-in, bit-for-bit equal replacement for a forest's ``predict_proba`` or ``predict``.

    Parameters
    ----------
    estimator : object
        A fitted scikit-learn estimator; only forests the fast path replicates are taken.
    method : {"predict_proba", "predict"}
        ``predict_proba`` for ``RandomForestClassifier`` and ``ExtraTreesClassifier``,
        ``predict`` for ``RandomForestRegressor`` and ``ExtraTreesRegressor``.

    Returns
    -------
    callable or None
        ``X (n_events, n_features) -> (n_events, n_classes)`` probabilities, or
        ``(n_events,)`` values for regressors, equal (``np.array_equal``) to
        ``getattr(estimator, method)(X)``; calls that method itself for input it does not
        replicate. None when ``estimator`` is not covered: use the method as usual.
    """
    trees = _trees(estimator, method)
    if trees is None:
        return None
    n_features = int(estimator.n_features_in_)
    n_trees = len(trees)
    tree_structs = [tree.tree_ for tree in trees]

    def fallback(X: Any) -> np.ndarray:
        return np.asarray(getattr(estimator, method)(X))

    if method == "predict_proba":
        n_classes = int(estimator.n_classes_)
        n_tree_classes = [int(tree.n_classes_) for tree in trees]

        def predict(X: np.ndarray) -> np.ndarray:
            X32 = _as_float32(X, n_features)
            if X32 is None:
                return fallback(X)
            out = np.zeros((X32.shape[0], n_classes), dtype=np.float64)
            for tree, k in zip(tree_structs, n_tree_classes, strict=True):
                out += tree.predict(X32)[:, :k]
            out /= n_trees
            return out

    else:

        def predict(X: np.ndarray) -> np.ndarray:
            X32 = _as_float32(X, n_features)
            if X32 is None:
                return fallback(X)
            out = np.zeros(X32.shape[0], dtype=np.float64)
            for tree in tree_structs:
                out += tree.predict(X32)[:, 0]
            out /= n_trees
            return out

    probe = _probe_events(trees, n_features)
    if not np.array_equal(predict(probe), fallback(probe)):
        return None
    return predict
