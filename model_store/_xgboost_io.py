"""XGBoost models in XGBoost's own JSON format, checked before XGBoost parses a byte.

A model is published from a ``Booster``, a scikit-learn wrapper (``XGBClassifier``, ...) or
the bytes of ``Booster.save_model`` / ``save_raw`` (JSON or UBJSON). The store parses the
document itself (bounded JSON, or the bounded UBJSON reader), checks it, and keeps it as
canonical JSON in ``model.json``. On load the same checks run again and XGBoost is handed
``json.dumps`` of the checked document, never the stored bytes, so the two parsers cannot
see different models (duplicate keys, trailing data).

Checked: a ``gbtree`` or ``dart`` booster with a supported objective; ``num_feature``
equal to the manifest's width; per tree, every array the predictor reads has ``num_nodes``
entries, child links form a tree (:func:`model_store._tree_links.check_links`), split
features lie in ``[0, num_feature)``, split conditions and leaf values are finite, one
output per leaf; ``tree_info`` groups lie in ``[0, n_groups)`` and ``iteration_indptr``
slices the trees. Categorical splits and multi-target trees are refused (not supported yet).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._json import JSONRefused, parse_json
from ._limits import StoreLimits
from ._tree_links import LinksRefused, check_links
from ._ubjson import UBJRefused, parse_ubjson
from .errors import MissingDependencyError, UnsafeModelError

__all__ = [
    "XGBOOST_FILE",
    "XGBoostInfo",
    "load_xgboost",
    "make_xgboost_predictor",
    "xgboost_document",
]

XGBOOST_FILE = "model.json"
CLASSIFICATION_OBJECTIVES = ("binary:logistic", "multi:softprob")
_REFUSED_OBJECTIVES = {
    "multi:softmax": "it predicts labels, not probabilities (train with multi:softprob)",
    "binary:logitraw": "it predicts margins, not probabilities (train with binary:logistic)",
    "binary:hinge": "it predicts labels, not probabilities (train with binary:logistic)",
}
_NO_PARENT = (2147483647, -1)


class _Refused(ValueError):
    pass


@dataclass(frozen=True)
class XGBoostInfo:
    """What the checks learnt about a model."""

    n_features: int
    n_groups: int
    objective: str
    task: str
    feature_names: list[str] | None
    best_iteration: int | None
    booster: str

    @property
    def n_outputs(self) -> int:
        return max(2, self.n_groups) if self.task == "classification" else self.n_groups


def _int(value: Any, what: str, low: int = 0, high: int = 2**31 - 1) -> int:
    try:
        out = int(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
    except ValueError:
        out = None
    if out is None or not low <= out <= high:
        raise _Refused(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return out


def _array(tree: dict[str, Any], key: str, n: int, where: str, dtype: Any) -> np.ndarray:
    values = tree.get(key)
    if not isinstance(values, list) or len(values) != n:
        raise _Refused(f"{where}: {key} must be a list of {n} numbers")
    try:
        out = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Refused(f"{where}: {key} holds a non-number") from exc
    if out.shape != (n,):
        raise _Refused(f"{where}: {key} must be a flat list")
    return out


def _check_tree(tree: Any, n_features: int, max_nodes: int, where: str) -> None:
    if not isinstance(tree, dict) or not isinstance(tree.get("tree_param"), dict):
        raise _Refused(f"{where}: not a tree object")
    param = tree["tree_param"]
    n = _int(param.get("num_nodes"), f"{where}: num_nodes", 1, max_nodes)
    if _int(param.get("num_feature"), f"{where}: num_feature") != n_features:
        raise _Refused(f"{where}: num_feature differs from the model's {n_features}")
    if _int(param.get("size_leaf_vector", "1"), f"{where}: size_leaf_vector") > 1:
        raise _Refused(f"{where}: multi-target trees are not supported")
    left = _array(tree, "left_children", n, where, np.int64)
    right = _array(tree, "right_children", n, where, np.int64)
    parents = _array(tree, "parents", n, where, np.int64)
    features = _array(tree, "split_indices", n, where, np.int64)
    conditions = _array(tree, "split_conditions", n, where, np.float64)
    _array(tree, "default_left", n, where, np.int64)
    split_type = _array(tree, "split_type", n, where, np.int64)
    is_leaf = left == -1
    if ((right == -1) != is_leaf).any():
        raise _Refused(f"{where}: a node has exactly one child")
    is_split = ~is_leaf
    try:
        check_links(left, right, is_split, where)
    except LinksRefused as exc:
        raise _Refused(str(exc)) from exc
    if int(parents[0]) not in _NO_PARENT:
        raise _Refused(f"{where}: the root has a parent")
    split_idx = np.flatnonzero(is_split)
    if (parents[left[is_split]] != split_idx).any() or (
        parents[right[is_split]] != split_idx
    ).any():
        raise _Refused(f"{where}: parents disagree with the child links")
    f = features[is_split]
    if ((f < 0) | (f >= n_features)).any():
        raise _Refused(f"{where}: a split feature is outside [0, {n_features})")
    if not np.isfinite(conditions).all():
        raise _Refused(f"{where}: a split condition or leaf value is not finite")
    if (split_type != 0).any() or tree.get("categories"):
        raise _Refused(f"{where}: categorical splits are not supported")


def check_document(doc: Any, limits: StoreLimits) -> XGBoostInfo:
    """Check a parsed XGBoost model document (see the module docstring)."""
    learner = doc.get("learner") if isinstance(doc, dict) else None
    if not isinstance(learner, dict):
        raise _Refused("not an XGBoost model (no learner object)")
    param = learner.get("learner_model_param")
    if not isinstance(param, dict):
        raise _Refused("learner_model_param is missing")
    n_features = _int(param.get("num_feature"), "num_feature", 1, limits.max_features)
    n_class = _int(param.get("num_class", "0"), "num_class", 0, limits.max_features)
    if _int(param.get("num_target", "1"), "num_target", 1) != 1:
        raise _Refused("multi-target models are not supported")
    objective = (learner.get("objective") or {}).get("name")
    if not isinstance(objective, str):
        raise _Refused("objective.name is missing")
    if objective in _REFUSED_OBJECTIVES:
        raise _Refused(
            f"objective {objective!r} is not supported: {_REFUSED_OBJECTIVES[objective]}"
        )
    if objective.startswith("rank:"):
        raise _Refused(f"ranking objective {objective!r} is not supported")
    task = "classification" if objective in CLASSIFICATION_OBJECTIVES else "regression"
    n_groups = max(1, n_class)
    if (objective == "multi:softprob") != (n_class >= 2):
        raise _Refused(f"objective {objective!r} with num_class {n_class}")
    booster: Any = learner.get("gradient_booster")
    kind = booster.get("name") if isinstance(booster, dict) else None
    if kind == "dart":
        booster = booster.get("gbtree")
    elif kind != "gbtree":
        raise _Refused(f"booster {kind!r} is not supported (gbtree or dart)")
    model = booster.get("model") if isinstance(booster, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("trees"), list):
        raise _Refused("gradient_booster.model.trees is missing")
    trees, tree_info = model["trees"], model.get("tree_info")
    n_trees = _int(model.get("gbtree_model_param", {}).get("num_trees"), "num_trees")
    if len(trees) != n_trees or not isinstance(tree_info, list) or len(tree_info) != n_trees:
        raise _Refused(f"num_trees {n_trees}, but {len(trees)} trees and their tree_info")
    if not all(type(g) is int and 0 <= g < n_groups for g in tree_info):
        raise _Refused(f"tree_info holds a group outside [0, {n_groups})")
    indptr = model.get("iteration_indptr")
    if indptr is not None and not (
        isinstance(indptr, list)
        and indptr
        and all(type(i) is int for i in indptr)
        and indptr[0] == 0
        and indptr[-1] == n_trees
        and all(a <= b for a, b in itertools.pairwise(indptr))
    ):
        raise _Refused("iteration_indptr does not slice the trees")
    max_nodes = limits.max_features * 64
    for i, tree in enumerate(trees):
        _check_tree(tree, n_features, max_nodes, f"tree {i}")
    if any(t not in ("float", "q", "int", "i") for t in learner.get("feature_types") or []):
        raise _Refused("categorical features are not supported")
    names = learner.get("feature_names") or None
    if names is not None and not (
        isinstance(names, list)
        and len(names) == n_features
        and all(isinstance(s, str) for s in names)
    ):
        raise _Refused(f"feature_names must be {n_features} strings")
    attributes = learner.get("attributes") or {}
    best = attributes.get("best_iteration") if isinstance(attributes, dict) else None
    best_iteration = None if best is None else _int(best, "best_iteration", 0, max(0, n_trees))
    return XGBoostInfo(n_features, n_groups, objective, task, names, best_iteration, kind)


def _parse(data: bytes, fmt: str, limits: StoreLimits) -> Any:
    if fmt == "auto":
        fmt = "json" if data[1:2] in (b'"', b" ", b"\n", b"\r", b"\t", b"}") else "ubj"
    if fmt == "ubj":
        if len(data) > limits.max_file_bytes:
            raise _Refused(f"{len(data)} bytes, over the cap of {limits.max_file_bytes}")
        return parse_ubjson(data, max_depth=limits.max_json_depth)
    # A model is far larger than a manifest: the file cap applies, not the manifest's.
    return parse_json(data, max_bytes=limits.max_file_bytes, max_depth=limits.max_json_depth)


def xgboost_document(
    data: bytes, *, fmt: str, limits: StoreLimits, name: str, version: int | None, filename: str
) -> tuple[bytes, XGBoostInfo]:
    """Parse (``fmt``: ``json``, ``ubj`` or ``auto``) and check a model; return the canonical
    JSON bytes XGBoost will be handed, and what the checks found.

    Raises
    ------
    UnsafeModelError
        Not JSON/UBJSON, over a cap, or failing a check; names ``filename``.
    """
    try:
        doc = _parse(data, fmt, limits)
        info = check_document(doc, limits)
        canonical = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    except (_Refused, JSONRefused, UBJRefused) as exc:
        kind = {"json": "JSON", "ubj": "UBJSON"}.get(fmt, "JSON or UBJSON")
        raise UnsafeModelError(
            name, version, filename, reason=f"not a valid XGBoost {kind} model ({exc})"
        ) from exc
    except ValueError as exc:  # json.dumps: a non-finite number outside the trees
        raise UnsafeModelError(
            name, version, filename, reason=f"not a valid XGBoost model ({exc})"
        ) from exc
    return canonical, info


def import_xgboost(name: str | None = None) -> Any:
    try:
        import xgboost
    except ImportError as exc:
        raise MissingDependencyError("xgboost", "xgboost", "xgboost", name) from exc
    return xgboost


def load_xgboost(canonical: bytes, info: XGBoostInfo, *, threads: int, name: str) -> Any:
    """A ``Booster`` from checked canonical JSON, with ``nthread`` capped (0: default)."""
    xgboost = import_xgboost(name)
    booster = xgboost.Booster()
    booster.load_model(bytearray(canonical))
    if threads > 0:
        booster.set_param({"nthread": threads})
    if booster.num_features() != info.n_features:
        raise ValueError(f"XGBoost reads {booster.num_features()} features, not {info.n_features}")
    return booster


def make_xgboost_predictor(booster: Any, info: XGBoostInfo) -> Callable[[np.ndarray], np.ndarray]:
    """``X (n, n_features) -> (n, n_outputs) float64`` through ``inplace_predict``.

    The same call, on the same trees, as ``XGBClassifier.predict_proba`` / ``predict``
    (including ``best_iteration`` after early stopping), so the values are equal; binary
    models get ``[1 - p, p]`` computed in float32 as the wrapper does.
    """
    iteration_range = (0, 0) if info.best_iteration is None else (0, info.best_iteration + 1)
    binary = info.task == "classification" and info.n_groups == 1

    def predict(X: np.ndarray) -> np.ndarray:
        out = booster.inplace_predict(X, iteration_range=iteration_range, validate_features=False)
        out = np.asarray(out)
        if binary:
            out = np.vstack((1.0 - out, out)).T
        return out.astype(np.float64).reshape(X.shape[0], -1)

    return predict
