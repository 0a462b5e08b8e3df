"""LightGBM models in LightGBM's text format, checked and rebuilt before LightGBM parses them.

A model is published from a ``Booster``, a scikit-learn wrapper (``LGBMClassifier``, ...) or
the text of ``Booster.save_model`` / ``model_to_string``. The store parses the text itself
(header, then ``Tree=`` blocks of ``key=value`` lines, up to ``end of trees``), checks every
tree and rebuilds the text from the checked keys only, in the original tokens: LightGBM is
handed that rebuilt text, never the stored bytes, so it cannot read what was not checked
(``tree_sizes`` offsets that point elsewhere, a duplicated key, the trailing parameters).

Checked per tree with ``L`` leaves: ``L - 1`` entries in every split array (empty for a
one-leaf tree) and ``L`` leaf values (a one-leaf tree's ``leaf_weight`` may be empty:
LightGBM writes it so when no split was found); children are split indices (``>= 0``) or
``~leaf`` (``< 0``) and form a tree over all ``2L - 1`` nodes
(:func:`model_store._tree_links.check_links`); split features lie in ``[0,
max_feature_idx]``; thresholds, leaf values and shrinkage are finite. Categorical splits
and linear trees are refused (not supported yet), as are objectives whose output is
neither a probability nor a value (ranking, custom).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._limits import StoreLimits
from ._tree_links import LinksRefused, check_links
from .errors import MissingDependencyError, UnsafeModelError

__all__ = ["LIGHTGBM_FILE", "LightGBMInfo", "lightgbm_text", "load_lightgbm"]

LIGHTGBM_FILE = "model.txt"
_HEADER_KEYS = (
    "version",
    "num_class",
    "num_tree_per_iteration",
    "label_index",
    "max_feature_idx",
    "objective",
    "average_output",
    "feature_names",
    "feature_infos",
    "monotone_constraints",
)
_DROPPED_HEADER = ("tree_sizes",)
_TREE_KEYS = (
    "num_leaves",
    "num_cat",
    "split_feature",
    "split_gain",
    "threshold",
    "decision_type",
    "left_child",
    "right_child",
    "leaf_value",
    "leaf_weight",
    "leaf_count",
    "internal_value",
    "internal_weight",
    "internal_count",
    "is_linear",
    "shrinkage",
)
_SPLIT_ARRAYS = ("split_feature", "threshold", "decision_type", "left_child", "right_child")
_OPTIONAL_SPLIT = ("split_gain", "internal_value", "internal_weight", "internal_count")
_CLASSIFICATION = ("binary", "multiclass", "multiclassova")
_REGRESSION = (
    "regression",
    "regression_l1",
    "huber",
    "fair",
    "poisson",
    "quantile",
    "mape",
    "gamma",
    "tweedie",
    "cross_entropy",
    "cross_entropy_lambda",
)
_END = "end of trees"


class _Refused(ValueError):
    pass


@dataclass(frozen=True)
class LightGBMInfo:
    n_features: int
    n_classes: int
    objective: str
    task: str
    feature_names: list[str] | None

    @property
    def n_outputs(self) -> int:
        if self.task == "classification":
            return 2 if self.n_classes == 1 else self.n_classes
        return 1


def _key_values(lines: list[str], allowed: tuple[str, ...], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep and key == "average_output":
            value = ""
        elif not sep:
            raise _Refused(f"{where}: a line without '=': {line[:40]!r}")
        if key not in allowed:
            raise _Refused(f"{where}: unknown key {key[:40]!r}")
        if key in out:
            raise _Refused(f"{where}: key {key!r} appears twice")
        out[key] = value
    return out


def _numbers(
    tree: dict[str, str], key: str, n: int, where: str, dtype: Any, *, empty_ok: bool = False
) -> np.ndarray:
    """The ``n`` numbers of ``key`` (none: an empty value, or the key absent when ``n`` is 0);
    ``empty_ok``: an empty value is accepted for ``n`` too (returned as no numbers)."""
    value = tree.get(key)
    if value is None and n:
        raise _Refused(f"{where}: {key} must have {n} entries")
    tokens = value.split(" ") if value else []
    if empty_ok and not tokens:
        return np.zeros(0, dtype)
    if len(tokens) != n:
        raise _Refused(f"{where}: {key} must have {n} entries")
    try:
        out = np.array(tokens, dtype=np.float64)
    except ValueError as exc:
        raise _Refused(f"{where}: {key} holds a non-number") from exc
    if not np.isfinite(out).all():
        raise _Refused(f"{where}: {key} holds NaN or infinity")
    if dtype is np.int64:
        if (out != np.round(out)).any() or (np.abs(out) > 2**31).any():
            raise _Refused(f"{where}: {key} holds a non-integer")
        return out.astype(np.int64)
    return out


def _int(value: str | None, what: str, low: int, high: int) -> int:
    try:
        out = int(value) if value is not None else None
    except ValueError:
        out = None
    if out is None or not low <= out <= high:
        raise _Refused(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return out


def _check_tree(tree: dict[str, str], n_features: int, cap: int, where: str) -> None:
    n_leaves = _int(tree.get("num_leaves"), f"{where}: num_leaves", 1, cap)
    if tree.get("num_cat", "0") != "0" or "cat_boundaries" in tree:
        raise _Refused(f"{where}: categorical splits are not supported")
    if tree.get("is_linear", "0") != "0":
        raise _Refused(f"{where}: linear trees are not supported")
    n_splits = n_leaves - 1
    arrays = {
        k: _numbers(tree, k, n_splits, where, np.int64) for k in _SPLIT_ARRAYS if k != "threshold"
    }
    _numbers(tree, "threshold", n_splits, where, np.float64)
    for key in _OPTIONAL_SPLIT:
        if key in tree:
            _numbers(tree, key, n_splits, where, np.float64)
    _numbers(tree, "leaf_value", n_leaves, where, np.float64)
    for key in ("leaf_weight", "leaf_count"):
        if key in tree:
            # LightGBM writes an empty leaf_weight for a one-leaf tree (no split found).
            one_leaf = key == "leaf_weight" and n_leaves == 1
            _numbers(tree, key, n_leaves, where, np.float64, empty_ok=one_leaf)
    _numbers(tree, "shrinkage", 1, where, np.float64)
    features = arrays["split_feature"]
    if ((features < 0) | (features >= n_features)).any():
        raise _Refused(f"{where}: a split feature is outside [0, {n_features})")
    decision = arrays["decision_type"]
    if ((decision & 1) != 0).any():
        raise _Refused(f"{where}: categorical splits are not supported")
    if ((decision < 0) | (decision > 15) | (((decision >> 2) & 3) == 3)).any():
        raise _Refused(f"{where}: a decision_type is not a numerical split")

    def unified(child: np.ndarray) -> np.ndarray:  # leaves after the splits: ~c -> n_splits + ~c
        return np.where(child >= 0, child, n_splits + (-child - 1))

    left, right = unified(arrays["left_child"]), unified(arrays["right_child"])
    if n_splits and (
        (arrays["left_child"] >= n_splits).any()
        or (arrays["right_child"] >= n_splits).any()
        or (left >= n_splits + n_leaves).any()
        or (right >= n_splits + n_leaves).any()
    ):
        raise _Refused(f"{where}: a child index is out of range")
    is_split = np.r_[np.ones(n_splits, bool), np.zeros(n_leaves, bool)]
    pad = np.zeros(n_leaves, np.int64)
    try:
        check_links(np.r_[left, pad], np.r_[right, pad], is_split, where)
    except LinksRefused as exc:
        raise _Refused(str(exc)) from exc


def _blocks(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    lines = text.split("\n")
    if not lines or lines[0].strip() != "tree":
        raise _Refused("the first line is not 'tree'")
    header: list[str] = []
    trees: list[tuple[str, list[str]]] = []
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        if line == _END:
            return header, trees
        if not line:
            continue
        if line.startswith("Tree="):
            trees.append((line, []))
        elif trees:
            trees[-1][1].append(line)
        else:
            header.append(line)
    raise _Refused(f"no {_END!r} line")


def check_text(text: str, limits: StoreLimits) -> tuple[str, LightGBMInfo]:
    """Check a model text; return the rebuilt text LightGBM will parse, and what was found."""
    header_lines, tree_blocks = _blocks(text)
    header = _key_values(header_lines, _HEADER_KEYS + _DROPPED_HEADER, "header")
    if header.get("version") not in ("v2", "v3", "v4"):
        raise _Refused(f"model format version {header.get('version')!r} is not v2, v3 or v4")
    n_features = (
        _int(header.get("max_feature_idx"), "max_feature_idx", 0, limits.max_features - 1) + 1
    )
    n_classes = _int(header.get("num_class"), "num_class", 1, limits.max_features)
    per_iteration = _int(
        header.get("num_tree_per_iteration"), "num_tree_per_iteration", 1, n_classes
    )
    objective = header.get("objective", "").split(" ")[0]
    if objective in _CLASSIFICATION:
        task = "classification"
        if (objective == "binary") != (n_classes == 1) or per_iteration != n_classes:
            raise _Refused(f"objective {objective!r} with num_class {n_classes}")
    elif objective in _REGRESSION and n_classes == 1:
        task = "regression"
    else:
        raise _Refused(f"objective {objective or 'custom'!r} is not supported")
    if not tree_blocks or len(tree_blocks) % per_iteration:
        raise _Refused(f"{len(tree_blocks)} trees for {per_iteration} per iteration")
    names = header.get("feature_names", "").split(" ")
    if len(names) != n_features:
        raise _Refused(f"feature_names must have {n_features} entries")
    out = ["tree", *(line for line in header_lines if line.partition("=")[0] in _HEADER_KEYS), ""]
    for i, (title, lines) in enumerate(tree_blocks):
        where = f"tree {i}"
        if title != f"Tree={i}":
            raise _Refused(f"{where}: expected 'Tree={i}', found {title[:40]!r}")
        if "is_linear=1" in lines:  # before its own keys (leaf_const, ...) count as unknown
            raise _Refused(f"{where}: linear trees are not supported")
        _check_tree(_key_values(lines, _TREE_KEYS, where), n_features, limits.max_features, where)
        out += [title, *lines, "", ""]
    out += [_END, ""]
    auto = names == [f"Column_{i}" for i in range(n_features)]
    return "\n".join(out), LightGBMInfo(
        n_features, n_classes, objective, task, None if auto else names
    )


def lightgbm_text(
    data: bytes, *, limits: StoreLimits, name: str, version: int | None, filename: str
) -> tuple[str, LightGBMInfo]:
    """Decode and check a LightGBM text model (:func:`check_text`), naming ``filename``."""
    try:
        if len(data) > limits.max_file_bytes:
            raise _Refused(f"{len(data)} bytes, over the cap of {limits.max_file_bytes}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused("not UTF-8 text") from exc
        return check_text(text, limits)
    except _Refused as exc:
        raise UnsafeModelError(
            name, version, filename, reason=f"not a valid LightGBM text model ({exc})"
        ) from exc


def import_lightgbm(name: str | None = None) -> Any:
    try:
        import lightgbm
    except ImportError as exc:
        raise MissingDependencyError("lightgbm", "lightgbm", "lightgbm", name) from exc
    return lightgbm


def load_lightgbm(text: str, info: LightGBMInfo, *, name: str) -> Any:
    """A ``Booster`` from checked, rebuilt text."""
    booster = import_lightgbm(name).Booster(model_str=text)
    if booster.num_feature() != info.n_features:
        raise ValueError(f"LightGBM reads {booster.num_feature()} features, not {info.n_features}")
    return booster


def make_lightgbm_predictor(
    booster: Any, info: LightGBMInfo, *, threads: int
) -> Callable[[np.ndarray], np.ndarray]:
    """``X (n, n_features) -> (n, n_outputs) float64`` through ``Booster.predict`` with
    ``num_threads`` capped (0: LightGBM's default); binary models get ``[1 - p, p]`` as
    ``LGBMClassifier.predict_proba`` computes it, so the values are equal."""
    binary = info.task == "classification" and info.n_classes == 1
    params = {"num_threads": threads} if threads > 0 else {}

    def predict(X: np.ndarray) -> np.ndarray:
        out = np.asarray(booster.predict(X, validate_features=False, **params))
        if binary:
            out = np.vstack((1.0 - out, out)).transpose()
        return out.astype(np.float64, copy=False).reshape(X.shape[0], -1)

    return predict
