"""Structural checks of every tree in a loaded scikit-learn model, before any prediction.

scikit-learn's Cython tree code follows node indices and reads feature columns without
bounds checks (``Tree.apply``, ``predict_stages``, HistGradientBoosting's
``_predict_from_raw_data``), which is why skops leaves ``Tree`` and ``TreePredictor``
untrusted. The store trusts them only together with this check, which makes every index
those loops follow provably in range:

``sklearn.tree._tree.Tree`` (decision trees, forests, extra-trees, gradient boosting)
    ``node_count <= capacity``; a node is a leaf iff both children are ``-1`` (the loop
    tests only the left child, so a half-leaf would index ``nodes[-1]``); a split's children
    lie in ``(i, node_count)``, so no cycle is possible, and every node but the root has
    exactly one parent (a real tree, all nodes reachable); ``max_depth`` is the actual depth;
    split features lie in ``[0, n_features_in_)``; split thresholds are not NaN (``+inf``
    is what scikit-learn stores for a split that sends only missing values right);
    ``value`` is ``(node_count, n_outputs, max_n_classes)``.
HistGradientBoosting ``TreePredictor``
    ``nodes`` has scikit-learn's record dtype; a split's children lie in ``(i, n_nodes)``,
    each non-root node has one parent; split features lie in ``[0, n_features_in_)``;
    categorical splits index existing bitset rows, on features the bin mapper knows as
    categorical.
Ensembles
    each tree's ``n_features_in_`` equals the ensemble's; gradient boosting has an
    ``(n_estimators, n_trees_per_iteration_)`` grid of regression trees and an init whose
    raw prediction has that width (the Cython loop writes column ``k`` unchecked).

Every ``Tree`` and ``TreePredictor`` anywhere in the object graph must be one of those
checked; one sitting elsewhere is refused. Checks are vectorised: a 100-tree depth-12 forest
costs a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ._refused import Refused

__all__ = ["check_trees"]

_TREE_LEAF = -1


def _n_features(estimator: Any, where: str) -> int:
    n = getattr(estimator, "n_features_in_", None)
    if type(n) is not int or n < 1:
        raise Refused(f"{where}: n_features_in_ must be a positive int, got {n!r}")
    return n


def _check_children(
    left: np.ndarray, right: np.ndarray, is_split: np.ndarray, n: int, where: str
) -> int:
    """Children of splits in ``(i, n)``, one parent per non-root node; returns the depth."""
    index = np.arange(n)
    split_idx = index[is_split]
    lc, rc = left[is_split].astype(np.int64), right[is_split].astype(np.int64)
    if ((lc <= split_idx) | (lc >= n) | (rc <= split_idx) | (rc >= n)).any():
        raise Refused(f"{where}: a child index is out of range or not after its parent")
    parents = np.bincount(np.concatenate([lc, rc]), minlength=n)
    if parents[0] != 0 or (parents[1:] != 1).any():
        raise Refused(f"{where}: nodes are shared or unreachable (not a tree)")
    # Depth: walk level by level (children come after parents, so this ends).
    depth, frontier = 0, np.array([0])
    while True:
        frontier = frontier[is_split[frontier]]
        if frontier.size == 0:
            return depth
        frontier = np.concatenate([left[frontier], right[frontier]]).astype(np.int64)
        depth += 1


def _check_tree(tree: Any, n_features: int, where: str) -> None:
    from sklearn.tree._tree import Tree

    if type(tree) is not Tree:
        raise Refused(f"{where}: tree_ is {type(tree).__name__}, not a Tree")
    n = tree.node_count
    if not (1 <= n <= tree.capacity):
        raise Refused(f"{where}: node_count {n} outside [1, capacity {tree.capacity}]")
    if tree.n_features != n_features:
        raise Refused(f"{where}: tree has {tree.n_features} features, expected {n_features}")
    left, right = tree.children_left, tree.children_right
    is_leaf = left == _TREE_LEAF
    if ((right == _TREE_LEAF) != is_leaf).any():
        raise Refused(f"{where}: a node has exactly one child")
    is_split = ~is_leaf
    depth = _check_children(left, right, is_split, n, where)
    if tree.max_depth != depth:
        raise Refused(f"{where}: max_depth {tree.max_depth}, actual depth {depth}")
    features = tree.feature[is_split]
    if ((features < 0) | (features >= n_features)).any():
        raise Refused(f"{where}: a split feature is outside [0, {n_features})")
    thresholds = tree.threshold[is_split]
    if (np.isnan(thresholds) | (thresholds == -np.inf)).any():
        raise Refused(f"{where}: a split threshold is NaN or -inf")
    expected = (n, tree.n_outputs, tree.max_n_classes)
    if tree.value.shape != expected:
        raise Refused(f"{where}: value has shape {tree.value.shape}, expected {expected}")


def _check_predictor(predictor: Any, n_features: int, categorical: np.ndarray, where: str) -> None:
    from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

    if type(predictor) is not TreePredictor:
        raise Refused(f"{where}: {type(predictor).__name__} is not a TreePredictor")
    nodes = predictor.nodes
    if not (
        type(nodes) is np.ndarray
        and nodes.dtype == PREDICTOR_RECORD_DTYPE
        and nodes.ndim == 1
        and nodes.size >= 1
    ):
        raise Refused(f"{where}: nodes are not a 1-d array of predictor records")
    is_split = nodes["is_leaf"] == 0
    left, right = nodes["left"], nodes["right"]
    _check_children(left, right, is_split, nodes.size, where)
    features = nodes["feature_idx"][is_split]
    if ((features < 0) | (features >= n_features)).any():
        raise Refused(f"{where}: a split feature is outside [0, {n_features})")
    if np.isnan(nodes["num_threshold"][is_split]).any():
        raise Refused(f"{where}: a split threshold is NaN")
    is_cat = is_split & (nodes["is_categorical"] != 0)
    if is_cat.any():
        for attr in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
            bitsets = getattr(predictor, attr, None)
            if not (
                type(bitsets) is np.ndarray
                and bitsets.dtype == np.uint32
                and bitsets.ndim == 2
                and bitsets.shape[1] == 8
            ):
                raise Refused(f"{where}: {attr} is not an (n, 8) uint32 array")
            if (nodes["bitset_idx"][is_cat] >= bitsets.shape[0]).any():
                raise Refused(f"{where}: a categorical split's bitset index is out of range")
        if not categorical[nodes["feature_idx"][is_cat]].all():
            raise Refused(f"{where}: a categorical split on a non-categorical feature")


def _objects(root: Any) -> Iterator[Any]:
    """Every object reachable from ``root`` through attributes and containers, once each."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | bool | type(None)):
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                stack.extend(obj.ravel().tolist())
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())


def check_trees(model: Any) -> int:
    """Check every tree structure in ``model`` (see the module docstring); returns the count.

    Raises
    ------
    Refused
        A tree is malformed, or a tree structure sits outside a supported estimator.
    """
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree import (
        DecisionTreeClassifier,
        DecisionTreeRegressor,
        ExtraTreeClassifier,
        ExtraTreeRegressor,
    )
    from sklearn.tree._tree import Tree

    single = (
        DecisionTreeClassifier,
        DecisionTreeRegressor,
        ExtraTreeClassifier,
        ExtraTreeRegressor,
    )
    forests = (
        RandomForestClassifier,
        RandomForestRegressor,
        ExtraTreesClassifier,
        ExtraTreesRegressor,
    )
    boosting = (GradientBoostingClassifier, GradientBoostingRegressor)
    hist = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
    checked: set[int] = set()
    found: list[tuple[str, Any]] = []
    objects = list(_objects(model))
    for obj in objects:
        kind = type(obj)
        name = kind.__name__
        if kind in (Tree, TreePredictor):
            found.append((name, obj))
        elif kind in single and hasattr(obj, "tree_"):
            _check_tree(obj.tree_, _n_features(obj, name), name)
            checked.add(id(obj.tree_))
        elif kind in forests and hasattr(obj, "estimators_"):
            n = _n_features(obj, name)
            trees = obj.estimators_
            if not isinstance(trees, list) or not all(type(t) in single for t in trees):
                raise Refused(f"{name}: estimators_ must be a list of decision trees")
            for i, tree in enumerate(trees):
                if _n_features(tree, f"{name}.estimators_[{i}]") != n:
                    raise Refused(f"{name}.estimators_[{i}]: n_features_in_ differs")
        elif kind in boosting and hasattr(obj, "estimators_"):
            _check_boosting(obj, name, single)
        elif kind in hist and hasattr(obj, "_predictors"):
            _check_hist(obj, name, checked)
    for name, obj in found:
        if id(obj) not in checked:
            raise Refused(f"a {name} outside a supported tree estimator")
    return len(found)


def _check_boosting(gb: Any, name: str, single: tuple[type, ...]) -> None:
    n = _n_features(gb, name)
    grid = gb.estimators_
    k = getattr(gb, "n_trees_per_iteration_", None)
    if not (
        type(grid) is np.ndarray
        and grid.dtype.hasobject
        and grid.ndim == 2
        and grid.shape[0] >= 1
        and type(k) is int
        and grid.shape[1] == k
    ):
        raise Refused(f"{name}: estimators_ must be an (n_estimators, {k!r}) object grid")
    regressor = single[1]  # DecisionTreeRegressor
    trees: list[Any] = grid.ravel().tolist()
    for tree in trees:
        if type(tree) is not regressor:
            raise Refused(f"{name}: estimators_ holds a {type(tree).__name__}")
        outputs = vars(tree)["tree_"].n_outputs
        if _n_features(tree, f"{name} tree") != n or outputs != 1:
            raise Refused(f"{name}: a tree has another n_features_in_ or several outputs")
    # predict_stages adds tree k into column k of the init's raw prediction, unchecked.
    raw = gb._raw_predict_init(np.zeros((1, n), dtype=np.float32))
    if np.shape(raw) != (1, k):
        raise Refused(f"{name}: init_ predicts shape {np.shape(raw)}, the trees need (1, {k})")


def _check_hist(hgb: Any, name: str, checked: set[int]) -> None:
    n = _n_features(hgb, name)
    mapper = getattr(hgb, "_bin_mapper", None)
    categorical = getattr(mapper, "is_categorical_", None)
    if categorical is None:
        categorical = np.zeros(n, dtype=bool)
    if not (type(categorical) is np.ndarray and categorical.shape == (n,)):
        raise Refused(f"{name}: _bin_mapper.is_categorical_ must have {n} entries")
    categorical = categorical.astype(bool)
    iterations = hgb._predictors
    if not isinstance(iterations, list):
        raise Refused(f"{name}: _predictors must be a list")
    for i, predictors in enumerate(iterations):
        if not isinstance(predictors, list):
            raise Refused(f"{name}: _predictors[{i}] must be a list")
        for k, predictor in enumerate(predictors):
            _check_predictor(predictor, n, categorical, f"{name}._predictors[{i}][{k}]")
            checked.add(id(predictor))
