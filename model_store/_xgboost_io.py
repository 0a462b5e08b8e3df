"""XGBoost models in XGBoost's own JSON format, checked before XGBoost parses a byte.

A model is published from a ``Booster``, a scikit-learn wrapper (``XGBClassifier``, ...) or
the bytes of ``Booster.save_model`` / ``save_raw`` (JSON or UBJSON). The store parses the
document itself (bounded JSON, or the bounded UBJSON reader), checks it, and keeps it as
canonical JSON in ``model.json``. On load the same checks run again and XGBoost is handed a
document rebuilt from the checked values only (:func:`check_document`), never the stored
bytes: every key XGBoost reads is either checked or refused as unknown, integers are plain
decimal, floats are the float32 values XGBoost keeps, written by ``repr`` (exact), and
strings it parses (``base_score``, objective parameters) are re-spelt from the numbers read.

Checked: a ``gbtree`` or ``dart`` booster with a supported objective (its parameters known
ones, ``softmax_multiclass_param.num_class`` equal to ``num_class``); ``num_feature`` equal
to the manifest's width; at most ``limits.max_trees`` trees and ``limits.max_tree_nodes``
nodes (a JSON text holding more objects, arrays or numbers than such a model can is refused
before it is parsed); per tree, every array XGBoost reads has ``num_nodes`` entries, child
links form a tree (:func:`model_store._tree_links.check_links`), split features lie in
``[0, num_feature)``, every float is finite as a float32, one output per leaf, no deleted
nodes; ``tree_info`` groups lie in ``[0, n_groups)``, ``iteration_indptr`` slices the trees
and dart's ``weight_drop`` has one weight per tree. Categorical splits (``split_type``, the
four ``categories*`` arrays, a non-empty ``cats`` encoding) and multi-target trees are
refused (not supported yet).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._json import parse_json
from ._limits import StoreLimits
from ._native import NativeCodec, Opened
from ._refused import Refused
from ._tree_links import check_links
from ._ubjson import parse_ubjson
from .errors import MissingDependencyError, PublishError, UnsafeModelError

__all__ = [
    "CODEC",
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
_INT_TEXT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})\Z")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?\Z")
#: Per-tree arrays XGBoost reads, with the type it keeps them in.
_TREE_ARRAYS: dict[str, Any] = {
    "base_weights": np.float32,
    "default_left": np.int64,
    "left_children": np.int64,
    "loss_changes": np.float32,
    "parents": np.int64,
    "right_children": np.int64,
    "split_conditions": np.float32,
    "split_indices": np.int64,
    "split_type": np.int64,
    "sum_hessian": np.float32,
}
_CATEGORY_ARRAYS = ("categories", "categories_nodes", "categories_segments", "categories_sizes")
_TREE_KEYS = (*_TREE_ARRAYS, *_CATEGORY_ARRAYS, "id", "tree_param")
_TREE_PARAM_KEYS = ("num_deleted", "num_feature", "num_nodes", "size_leaf_vector")
_LEARNER_KEYS = (
    "attributes",
    "feature_names",
    "feature_types",
    "gradient_booster",
    "learner_model_param",
    "objective",
)
_LEARNER_REQUIRED = ("gradient_booster", "learner_model_param", "objective")
_MODEL_PARAM_KEYS = ("base_score", "boost_from_average", "num_class", "num_feature", "num_target")
_GBTREE_MODEL_KEYS = ("cats", "gbtree_model_param", "iteration_indptr", "tree_info", "trees")
_OBJECTIVES = (
    *CLASSIFICATION_OBJECTIVES,
    "reg:squarederror",
    "reg:squaredlogerror",
    "reg:logistic",
    "reg:pseudohubererror",
    "reg:absoluteerror",
    "reg:quantileerror",
    "reg:gamma",
    "reg:tweedie",
    "count:poisson",
    "survival:cox",
    "survival:aft",
    "reg:linear",
)
#: Objective parameter groups XGBoost writes, each parameter's kind; others are refused.
_OBJECTIVE_PARAMS: dict[str, dict[str, str]] = {
    "reg_loss_param": {"scale_pos_weight": "float"},
    "pseudo_huber_param": {"huber_slope": "float"},
    "quantile_loss_param": {"quantile_alpha": "floats"},
    "tweedie_regression_param": {"tweedie_variance_power": "float"},
    "poisson_regression_param": {"max_delta_step": "float"},
    "aft_loss_param": {"aft_loss_distribution": "name", "aft_loss_distribution_scale": "float"},
    "softmax_multiclass_param": {"num_class": "class_count"},
}
_AFT_DISTRIBUTIONS = ("normal", "logistic", "extreme")


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
    """An integer, or a string of one in plain decimal (XGBoost writes counts as strings)."""
    if isinstance(value, str) and _INT_TEXT.match(value):
        out: int | None = int(value)
    elif type(value) is int:
        out = value
    else:
        out = None
    if out is None or not low <= out <= high:
        raise Refused(f"{what} must be an integer in [{low}, {high}], got {str(value)[:40]!r}")
    return out


def _float_text(value: Any, what: str) -> float:
    """A finite float32 written as XGBoost's parameters are (a decimal string)."""
    if not isinstance(value, str) or not _FLOAT_TEXT.match(value):
        raise Refused(f"{what} must be a decimal number, got {str(value)[:40]!r}")
    out = np.float32(float(value))
    if not np.isfinite(out):
        raise Refused(f"{what} is not a finite float32: {value[:40]!r}")
    return float(out)


def _floats_text(value: Any, what: str) -> list[float]:
    """``"[a,b,...]"`` or ``"a"`` (XGBoost 2 and 3 spell vectors of floats so)."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        return [_float_text(v, what) for v in value[1:-1].split(",")]
    return [_float_text(value, what)]


def _spell_floats(values: list[float]) -> str:
    return "[" + ",".join(repr(v) for v in values) + "]"


def _keys(
    obj: Any, allowed: tuple[str, ...], required: tuple[str, ...], where: str
) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise Refused(f"{where} must be an object")
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        raise Refused(f"{where}: unknown key {str(unknown[0])[:40]!r}")
    missing = [k for k in required if k not in obj]
    if missing:
        raise Refused(f"{where}: {missing[0]} is missing")
    return obj


def _array(tree: dict[str, Any], key: str, n: int, where: str, dtype: Any) -> np.ndarray:
    """``n`` numbers (integers for an integer ``dtype``), as numpy read them: never strings,
    booleans or nested lists, which numpy would silently convert."""
    values = tree.get(key)
    if not isinstance(values, list) or len(values) != n:
        raise Refused(f"{where}: {key} must be a list of {n} numbers")
    try:
        out = np.asarray(values)
    except (TypeError, ValueError, OverflowError) as exc:
        raise Refused(f"{where}: {key} holds a non-number") from exc
    kinds = "iuf" if dtype is np.float32 else "iu"
    if out.shape != (n,) or (n and out.dtype.kind not in kinds):
        raise Refused(f"{where}: {key} must be a flat list of {n} numbers")
    if dtype is np.float32:
        # XGBoost keeps these as float32: a float64 beyond its range would become infinite.
        with np.errstate(over="ignore"):
            out = out.astype(np.float32)
        if not np.isfinite(out).all():
            raise Refused(f"{where}: {key} holds a value that is not finite as a float32")
    else:
        out = out.astype(np.int64)
        if n and (out.min() < -(2**31) or out.max() > 2**32 - 1):
            raise Refused(f"{where}: {key} holds an integer out of range")
    return out


def _check_tree(  # noqa: C901 (one check per array of an untrusted tree)
    tree: Any, i: int, n_features: int, max_nodes: int, where: str
) -> tuple[dict[str, Any], int]:
    """The tree rebuilt from its checked arrays, and its node count."""
    tree = _keys(tree, _TREE_KEYS, ("tree_param",), where)
    param = _keys(tree["tree_param"], _TREE_PARAM_KEYS, _TREE_PARAM_KEYS, f"{where}.tree_param")
    n = _int(param.get("num_nodes"), f"{where}: num_nodes", 1, max_nodes)
    if _int(param.get("num_feature"), f"{where}: num_feature") != n_features:
        raise Refused(f"{where}: num_feature differs from the model's {n_features}")
    if _int(param.get("size_leaf_vector"), f"{where}: size_leaf_vector") > 1:
        raise Refused(f"{where}: multi-target trees are not supported")
    if _int(param.get("num_deleted"), f"{where}: num_deleted") != 0:
        raise Refused(f"{where}: deleted nodes are not supported")
    if _int(tree.get("id"), f"{where}: id") != i:
        raise Refused(f"{where}: id must be {i}")
    for key in _CATEGORY_ARRAYS:
        # XGBoost indexes `categories` through the other three: all must be empty.
        value = tree.get(key, [])
        if not isinstance(value, list) or value:
            raise Refused(f"{where}: categorical splits are not supported ({key})")
    arrays = {k: _array(tree, k, n, where, t) for k, t in _TREE_ARRAYS.items()}
    left, right, parents = arrays["left_children"], arrays["right_children"], arrays["parents"]
    is_leaf = left == -1
    if ((right == -1) != is_leaf).any():
        raise Refused(f"{where}: a node has exactly one child")
    is_split = ~is_leaf
    check_links(left, right, is_split, where)
    if int(parents[0]) not in _NO_PARENT:
        raise Refused(f"{where}: the root has a parent")
    split_idx = np.flatnonzero(is_split)
    if (parents[left[is_split]] != split_idx).any() or (
        parents[right[is_split]] != split_idx
    ).any():
        raise Refused(f"{where}: parents disagree with the child links")
    f = arrays["split_indices"]
    if ((f < 0) | (f >= n_features)).any():
        raise Refused(f"{where}: a split feature is outside [0, {n_features})")
    if ((arrays["default_left"] != 0) & (arrays["default_left"] != 1)).any():
        raise Refused(f"{where}: default_left holds other than 0 and 1")
    if (arrays["split_type"] != 0).any():
        raise Refused(f"{where}: categorical splits are not supported")
    rebuilt: dict[str, Any] = {k: v.tolist() for k, v in arrays.items()}
    rebuilt.update({k: [] for k in _CATEGORY_ARRAYS})
    rebuilt["id"] = i
    rebuilt["tree_param"] = {
        "num_deleted": "0",
        "num_feature": str(n_features),
        "num_nodes": str(n),
        "size_leaf_vector": "1",
    }
    return rebuilt, n


def _objective(obj: Any, n_class: int) -> tuple[str, dict[str, Any]]:  # noqa: C901 (one branch per objective the store accepts)
    """The objective's name and its rebuilt parameters (only those known, re-spelt)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise Refused("objective.name is missing")
    name = obj["name"]
    if name in _REFUSED_OBJECTIVES:
        raise Refused(f"objective {name!r} is not supported: {_REFUSED_OBJECTIVES[name]}")
    if name.startswith("rank:"):
        raise Refused(f"ranking objective {name!r} is not supported")
    if name not in _OBJECTIVES:
        raise Refused(f"objective {name[:40]!r} is not supported")
    out: dict[str, Any] = {"name": name}
    for group, params in obj.items():
        if group == "name":
            continue
        known = _OBJECTIVE_PARAMS.get(group)
        where = f"objective.{str(group)[:40]}"
        if known is None:
            raise Refused(f"{where}: unknown parameter group")
        _keys(params, tuple(known), (), where)
        rebuilt: dict[str, str] = {}
        for key, value in params.items():
            kind = known[key]
            if kind == "class_count":
                if _int(value, f"{where}.{key}", 0) != n_class:
                    raise Refused(f"{where}.{key} differs from num_class {n_class}")
                rebuilt[key] = str(n_class)
            elif kind == "floats":
                rebuilt[key] = _spell_floats(_floats_text(value, f"{where}.{key}"))
            elif kind == "float":
                rebuilt[key] = repr(_float_text(value, f"{where}.{key}"))
            elif value in _AFT_DISTRIBUTIONS:
                rebuilt[key] = value
            else:
                raise Refused(f"{where}.{key}: unknown value {str(value)[:40]!r}")
        out[group] = rebuilt
    return name, out


def _string_list(value: Any, n: int | None, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise Refused(f"{what} must be a list of strings")
    if n is not None and len(value) not in (0, n):
        raise Refused(f"{what} must have {n} entries")
    return list(value)


def check_document(doc: Any, limits: StoreLimits) -> tuple[dict[str, Any], XGBoostInfo]:  # noqa: C901 (one check per field of an untrusted file, read top to bottom)
    """Check a parsed XGBoost model document (see the module docstring); return it rebuilt
    from the checked values only, and what the checks found."""
    doc = _keys(doc, ("learner", "version"), ("learner",), "the document")
    version = doc.get("version", [1, 0, 0])
    if not (isinstance(version, list) and len(version) == 3):
        raise Refused("version must be a list of 3 integers")
    version = [_int(v, "version") for v in version]
    learner = _keys(doc["learner"], _LEARNER_KEYS, _LEARNER_REQUIRED, "learner")
    param = _keys(
        learner["learner_model_param"],
        _MODEL_PARAM_KEYS,
        ("num_feature",),
        "learner_model_param",
    )
    n_features = _int(param.get("num_feature"), "num_feature", 1, limits.max_features)
    n_class = _int(param.get("num_class", "0"), "num_class", 0, limits.max_features)
    if _int(param.get("num_target", "1"), "num_target", 1) != 1:
        raise Refused("multi-target models are not supported")
    n_groups = max(1, n_class)
    base_score = _floats_text(param.get("base_score", "0.5"), "base_score")
    if len(base_score) not in (1, n_groups):
        raise Refused(f"base_score has {len(base_score)} values for {n_groups} outputs")
    boost_from_average = _int(param.get("boost_from_average", "1"), "boost_from_average", 0, 1)
    objective, objective_doc = _objective(learner["objective"], n_class)
    task = "classification" if objective in CLASSIFICATION_OBJECTIVES else "regression"
    if (objective == "multi:softprob") != (n_class >= 2):
        raise Refused(f"objective {objective!r} with num_class {n_class}")
    booster = learner["gradient_booster"]
    kind = booster.get("name") if isinstance(booster, dict) else None
    weight_drop: list[float] | None = None
    if kind == "dart":
        booster = _keys(booster, ("name", "gbtree", "weight_drop"), ("gbtree",), "dart")
        inner = booster["gbtree"]
        if not isinstance(inner, dict) or inner.get("name") != "gbtree":
            raise Refused("dart: gbtree.name must be 'gbtree'")
        gbtree = _keys(inner, ("name", "model"), ("model",), "dart.gbtree")
    elif kind == "gbtree":
        gbtree = _keys(booster, ("name", "model"), ("model",), "gradient_booster")
    else:
        raise Refused(f"booster {str(kind)[:40]!r} is not supported (gbtree or dart)")
    model = _keys(gbtree["model"], _GBTREE_MODEL_KEYS, ("trees", "gbtree_model_param"), "model")
    cats = model.get("cats", {})
    _keys(cats, ("enc", "feature_segments", "sorted_idx"), (), "model.cats")
    if any(not isinstance(v, list) or v for v in cats.values()):
        raise Refused("categorical features are not supported (model.cats is not empty)")
    trees, tree_info = model["trees"], model.get("tree_info")
    gparam = _keys(
        model["gbtree_model_param"],
        ("num_trees", "num_parallel_tree"),
        ("num_trees",),
        "gbtree_model_param",
    )
    n_trees = _int(gparam.get("num_trees"), "num_trees", 0, limits.max_trees)
    n_parallel = _int(gparam.get("num_parallel_tree", "1"), "num_parallel_tree", 1, max(n_trees, 1))
    if not isinstance(trees, list) or len(trees) != n_trees:
        raise Refused(f"num_trees {n_trees}, but {len(trees)} trees")
    tree_info = _array(model, "tree_info", n_trees, "model", np.int64)
    if ((tree_info < 0) | (tree_info >= n_groups)).any():
        raise Refused(f"tree_info holds a group outside [0, {n_groups})")
    indptr = model.get("iteration_indptr")
    if indptr is not None:
        if not isinstance(indptr, list) or not 1 <= len(indptr) <= n_trees + 1:
            raise Refused("iteration_indptr does not slice the trees")
        indptr = _array(model, "iteration_indptr", len(indptr), "model", np.int64)
        if not (indptr[0] == 0 and indptr[-1] == n_trees and (np.diff(indptr) >= 0).all()):
            raise Refused("iteration_indptr does not slice the trees")
    if kind == "dart":
        weight_drop = _array(booster, "weight_drop", n_trees, "dart", np.float32).tolist()
    rebuilt_trees = []
    total = 0
    for i, tree in enumerate(trees):
        rebuilt, n = _check_tree(tree, i, n_features, limits.max_tree_nodes, f"tree {i}")
        total += n
        if total > limits.max_tree_nodes:
            raise Refused(f"more than {limits.max_tree_nodes} nodes (store.limits.max_tree_nodes)")
        rebuilt_trees.append(rebuilt)
    types = _string_list(learner.get("feature_types", []), n_features, "feature_types")
    if any(t not in ("float", "q", "int", "i") for t in types):
        raise Refused("categorical features are not supported")
    names = _string_list(learner.get("feature_names", []), n_features, "feature_names") or None
    attributes = learner.get("attributes", {})
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise Refused("attributes must map strings to strings")
    best = attributes.get("best_iteration")
    best_iteration = None if best is None else _int(best, "best_iteration", 0, max(0, n_trees))
    model_doc: dict[str, Any] = {
        "gbtree_model_param": {"num_parallel_tree": str(n_parallel), "num_trees": str(n_trees)},
        "tree_info": tree_info.tolist(),
        "trees": rebuilt_trees,
    }
    if indptr is not None:
        model_doc["iteration_indptr"] = indptr.tolist()
    if "cats" in model:
        model_doc["cats"] = {"enc": [], "feature_segments": [], "sorted_idx": []}
    gb_doc: dict[str, Any] = {"name": "gbtree", "model": model_doc}
    if kind == "dart":
        gb_doc = {"name": "dart", "gbtree": gb_doc, "weight_drop": weight_drop}
    param_doc = {
        "base_score": _spell_floats(base_score)
        if str(param.get("base_score", "[")).startswith("[")
        else repr(base_score[0]),
        "boost_from_average": str(boost_from_average),
        "num_class": str(n_class),
        "num_feature": str(n_features),
        "num_target": "1",
    }
    learner_doc = {
        "attributes": dict(attributes),
        "feature_names": names or [],
        "feature_types": types,
        "gradient_booster": gb_doc,
        "learner_model_param": param_doc,
        "objective": objective_doc,
    }
    canonical = {"learner": learner_doc, "version": version}
    info = XGBoostInfo(n_features, n_groups, objective, task, names, best_iteration, kind)
    return canonical, info


def _max_values(limits: StoreLimits) -> int:
    """Values (numbers, strings, containers) a model within the caps can hold: 10 numbers
    per node, a few dozen per tree, the feature names and types, some slack."""
    return 4096 + 16 * limits.max_tree_nodes + 64 * limits.max_trees + 2 * limits.max_features


def _precount(data: bytes, limits: StoreLimits) -> None:
    """Refuse, before parsing, a JSON text holding more objects, arrays or numbers than a
    model within the tree and node caps can (a file of empty objects parses at about 50
    bytes of memory per input byte). Brackets inside strings count too: only an upper bound.
    """
    trees, nodes = limits.max_trees, limits.max_tree_nodes
    caps = (
        (b"{", 64 + 2 * trees, "objects"),
        (b"[", 64 + len(_TREE_ARRAYS) * 2 * trees + 8, "arrays"),
        (b",", _max_values(limits), "values"),
    )
    for byte, cap, what in caps:
        if data.count(byte) > cap:
            raise Refused(
                f"more {what} than a model of {trees} trees and {nodes} nodes holds "
                "(store.limits.max_trees, max_tree_nodes)"
            )


def _parse(data: bytes, fmt: str, limits: StoreLimits) -> Any:
    if fmt == "auto":
        fmt = "json" if data[1:2] in (b'"', b" ", b"\n", b"\r", b"\t", b"}") else "ubj"
    if fmt == "ubj":
        if len(data) > limits.max_file_bytes:
            raise Refused(f"{len(data)} bytes, over the cap of {limits.max_file_bytes}")
        return parse_ubjson(data, max_depth=limits.max_json_depth, max_items=_max_values(limits))
    # A model is far larger than a manifest: the file cap applies, not the manifest's.
    _precount(data, limits)
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
        rebuilt, info = check_document(doc, limits)
        del doc
        canonical = json.dumps(rebuilt, separators=(",", ":"), allow_nan=False).encode()
    except Refused as exc:
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


def _xgboost_bytes(model: Any, name: str) -> tuple[bytes, str]:
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    if not hasattr(booster, "save_raw"):
        raise PublishError(name, f"not an XGBoost model: {type(model).__name__}")
    return bytes(booster.save_raw("json")), "json"


def _open_xgboost(
    data: bytes,
    fmt: str,
    *,
    name: str,
    version: int | None,
    filename: str,
    limits: StoreLimits,
    threads: int,
    n_features: int | None,
    task: str | None,
    classes: list[Any] | None,
) -> Opened:
    """Check ``data`` (JSON, UBJSON or ``auto``), load its canonical rebuild."""
    canonical, xinfo = xgboost_document(
        data, fmt=fmt, limits=limits, name=name, version=version, filename=filename
    )
    booster = load_xgboost(canonical, xinfo, threads=threads, name=name)
    found = {
        "n_features": xinfo.n_features,
        "task": xinfo.task,
        "n_outputs": xinfo.n_outputs,
        "feature_names": xinfo.feature_names,
        "estimator": f"xgboost.{xinfo.booster} {xinfo.objective}",
    }
    return canonical, booster, make_xgboost_predictor(booster, xinfo), found


def _imported_xgboost(
    data: bytes, *, suffix: str, name: str, filename: str, limits: StoreLimits
) -> bytes:
    # Checked here with the format the extension names (publish then stores its JSON).
    canonical, _ = xgboost_document(
        data, fmt=suffix[1:], limits=limits, name=name, version=None, filename=filename
    )
    return canonical


def _structure(data: bytes) -> dict[str, Any]:
    """Trees and nodes of stored (canonical JSON) bytes."""
    trees = json.loads(data)["learner"]["gradient_booster"]["model"]["trees"]
    return {"trees": len(trees), "nodes": sum(len(t["left_children"]) for t in trees)}


#: The XGBoost format: stored as the canonical JSON rebuild; bytes given to publish may be
#: JSON or UBJSON (told apart by their first byte).
CODEC = NativeCodec(
    name="xgboost",
    extensions=(".json", ".ubj"),
    how_to_convert="booster.save_model('model.json') (or model.get_booster().save_model)",
    filename=XGBOOST_FILE,
    libraries=("xgboost",),
    stored_fmt="json",
    bytes_fmt="auto",
    serialise=_xgboost_bytes,
    open=_open_xgboost,
    imported=_imported_xgboost,
    structure=_structure,
)
