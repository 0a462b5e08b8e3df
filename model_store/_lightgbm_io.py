"""LightGBM models in LightGBM's text format, checked and rebuilt before LightGBM parses them.

A model is published from a ``Booster``, a scikit-learn wrapper (``LGBMClassifier``, ...) or
the text of ``Booster.save_model`` / ``model_to_string``. The store parses the text itself
(header, then ``Tree=`` blocks of ``key=value`` lines, up to ``end of trees``), checks every
tree and rebuilds the text from the checked values only: LightGBM is handed that rebuilt
text, never the stored bytes, so it cannot read what was not checked (``tree_sizes`` offsets
that point elsewhere, a duplicated key, the trailing parameters) nor read a number other
than the check did. LightGBM reads only an integer's leading digits, so integers must be
plain decimal (``1e1``, ``+1``, ``01``, ``1.0``, ``1_0`` are refused); floats are re-spelt
by ``repr``, which LightGBM's parser reads back as the very doubles the check read. The
objective line is rebuilt from its known parameters (``sigmoid``, ``num_class`` equal to
the header's, ``sqrt``), ``feature_infos`` re-spelt.

Checked per tree with ``L`` leaves: ``L - 1`` entries in every split array (empty for a
one-leaf tree) and ``L`` leaf values (a one-leaf tree's ``leaf_weight`` may be empty:
LightGBM writes it so when no split was found); children are split indices (``>= 0``) or
``~leaf`` (``< 0``) and form a tree over all ``2L - 1`` nodes
(:func:`model_store._tree_links.check_links`); split features lie in ``[0,
max_feature_idx]``; thresholds, leaf values and shrinkage are finite. At most
``limits.max_trees`` trees and ``limits.max_tree_nodes`` nodes. Categorical splits and
linear trees are refused (not supported yet), as are objectives whose output is neither a
probability nor a value (ranking, custom).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._limits import StoreLimits
from ._native import NativeCodec, Opened
from ._refused import Refused
from ._tree_links import check_links
from .errors import MissingDependencyError, PublishError, UnsafeModelError

__all__ = ["CODEC", "LIGHTGBM_FILE", "LightGBMInfo", "lightgbm_text", "load_lightgbm"]

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
_INT_TEXT = re.compile(r"-?(?:0|[1-9][0-9]{0,18})\Z")
_INTS_LINE = re.compile(r"-?(?:0|[1-9][0-9]{0,9})(?: -?(?:0|[1-9][0-9]{0,9}))*\Z")
_NO_INTS = np.zeros(0, np.int64)
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?\Z")


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
            raise Refused(f"{where}: a line without '=': {line[:40]!r}")
        if key not in allowed:
            raise Refused(f"{where}: unknown key {key[:40]!r}")
        if key in out:
            raise Refused(f"{where}: key {key!r} appears twice")
        out[key] = value
    return out


def _tokens(tree: dict[str, str], key: str, n: int, where: str, *, empty_ok: bool) -> list[str]:
    value = tree.get(key)
    if value is None and n:
        raise Refused(f"{where}: {key} must have {n} entries")
    tokens = value.split(" ") if value else []
    if empty_ok and not tokens:
        return tokens
    if len(tokens) != n:
        raise Refused(f"{where}: {key} must have {n} entries")
    return tokens


def _ints(tree: dict[str, str], key: str, n: int, where: str, out: dict[str, str]) -> np.ndarray:
    """The ``n`` integers of ``key``, each in plain decimal as LightGBM writes them.

    LightGBM reads an integer's leading digits and ignores the rest of the token, so any
    other spelling (``1e1``, ``+1``, ``01``, ``1.0``) would be another number to it: refused.
    The text kept (``out[key]``) is then the canonical one, ``" ".join(map(str, values))``.
    """
    value = tree.get(key)
    if not n:
        if value:
            raise Refused(f"{where}: {key} must have 0 entries")
        out[key] = ""
        return _NO_INTS
    if value is None or value.count(" ") != n - 1:
        raise Refused(f"{where}: {key} must have {n} entries")
    if not _INTS_LINE.match(value):
        raise Refused(f"{where}: {key} holds an integer not written in plain decimal")
    values = np.array(value.split(" "), dtype=np.int64)
    if values.min() < -(2**31) or values.max() >= 2**31:
        raise Refused(f"{where}: {key} holds an integer out of range")
    out[key] = value
    return values


def _floats(
    tree: dict[str, str],
    key: str,
    n: int,
    where: str,
    out: dict[str, str],
    *,
    empty_ok: bool = False,
) -> None:
    """Check that ``key`` holds ``n`` finite numbers; ``out[key]`` gets them re-spelt by
    ``repr``, which LightGBM's parser reads back as the very doubles Python read (whatever
    the spelling Python accepted). ``empty_ok``: an empty value is accepted for ``n`` too."""
    if not n and not tree.get(key):
        out[key] = ""
        return
    tokens = _tokens(tree, key, n, where, empty_ok=empty_ok)
    try:
        text = " ".join(map(repr, map(float, tokens)))
    except ValueError as exc:
        raise Refused(f"{where}: {key} holds a non-number") from exc
    if "n" in text:  # repr writes only 'inf' and 'nan' with letters other than 'e'
        raise Refused(f"{where}: {key} holds NaN or infinity")
    out[key] = text


def _int(value: str | None, what: str, low: int, high: int) -> int:
    """An integer in plain decimal (see :func:`_ints`), in ``[low, high]``."""
    out = int(value) if value is not None and _INT_TEXT.match(value) else None
    if out is None or not low <= out <= high:
        raise Refused(f"{what} must be an integer in [{low}, {high}], got {str(value)[:40]!r}")
    return out


def _check_tree(  # noqa: C901 (one check per array of an untrusted tree)
    tree: dict[str, str], n_features: int, cap: int, where: str
) -> tuple[list[str], int]:
    """The tree's lines rebuilt from the checked values, and its node count."""
    n_leaves = _int(tree.get("num_leaves"), f"{where}: num_leaves", 1, cap)
    if tree.get("num_cat", "0") != "0" or "cat_boundaries" in tree:
        raise Refused(f"{where}: categorical splits are not supported")
    if tree.get("is_linear", "0") != "0":
        raise Refused(f"{where}: linear trees are not supported")
    n_splits = n_leaves - 1
    out: dict[str, str] = {"num_leaves": str(n_leaves)}
    if "num_cat" in tree:
        out["num_cat"] = "0"
    arrays = {k: _ints(tree, k, n_splits, where, out) for k in _SPLIT_ARRAYS if k != "threshold"}
    _floats(tree, "threshold", n_splits, where, out)
    for key in _OPTIONAL_SPLIT:
        if key in tree:
            if key == "internal_count":
                _ints(tree, key, n_splits, where, out)
            else:
                _floats(tree, key, n_splits, where, out)
    _floats(tree, "leaf_value", n_leaves, where, out)
    # LightGBM writes an empty leaf_weight for a one-leaf tree (no split found).
    if "leaf_weight" in tree:
        _floats(tree, "leaf_weight", n_leaves, where, out, empty_ok=n_leaves == 1)
    if "leaf_count" in tree:
        _ints(tree, "leaf_count", n_leaves, where, out)
    if "is_linear" in tree:
        out["is_linear"] = "0"
    _floats(tree, "shrinkage", 1, where, out)
    features = arrays["split_feature"]
    if ((features < 0) | (features >= n_features)).any():
        raise Refused(f"{where}: a split feature is outside [0, {n_features})")
    decision = arrays["decision_type"]
    if ((decision & 1) != 0).any():
        raise Refused(f"{where}: categorical splits are not supported")
    if ((decision < 0) | (decision > 15) | (((decision >> 2) & 3) == 3)).any():
        raise Refused(f"{where}: a decision_type is not a numerical split")

    def unified(child: np.ndarray) -> np.ndarray:  # leaves after the splits: ~c -> n_splits + ~c
        return np.where(child >= 0, child, n_splits + (-child - 1))

    left, right = unified(arrays["left_child"]), unified(arrays["right_child"])
    if n_splits and (
        (arrays["left_child"] >= n_splits).any()
        or (arrays["right_child"] >= n_splits).any()
        or (left >= n_splits + n_leaves).any()
        or (right >= n_splits + n_leaves).any()
    ):
        raise Refused(f"{where}: a child index is out of range")
    if n_splits:
        is_split = np.zeros(n_splits + n_leaves, bool)
        is_split[:n_splits] = True
        pad = np.zeros(n_leaves, np.int64)
        check_links(np.concatenate((left, pad)), np.concatenate((right, pad)), is_split, where)
    lines = [f"{k}={out[k]}" for k in _TREE_KEYS if k in out]
    return lines, n_splits + n_leaves


def _objective(value: str, n_classes: int) -> tuple[str, str]:
    """The objective's name and its line rebuilt from the known, checked parameters."""
    name, *params = value.split(" ")
    out = [name]
    for token in params:
        key, sep, number = token.partition(":")
        if token == "sqrt":  # noqa: S105 (a parsed token, not a secret)
            out.append(token)
        elif sep and key == "num_class":
            if _int(number, "objective num_class", 1, n_classes) != n_classes:
                raise Refused(f"the objective's num_class differs from num_class {n_classes}")
            out.append(f"num_class:{n_classes}")
        elif sep and key == "sigmoid" and _FLOAT_TEXT.match(number):
            sigmoid = float(number)
            if not 0 < sigmoid < 1e6:
                raise Refused(f"sigmoid {number[:40]!r} is out of range")
            out.append(f"sigmoid:{sigmoid!r}")
        else:
            raise Refused(f"unknown objective parameter {token[:40]!r}")
    return name, " ".join(out)


def _feature_info(token: str) -> str:
    """``none``, ``[min:max]`` or ``a:b:c`` (categories), re-spelt."""
    if token == "none":  # noqa: S105 (a parsed token, not a secret)
        return token
    if token.startswith("[") and token.endswith("]"):
        low, sep, high = token[1:-1].partition(":")
        if sep and _FLOAT_TEXT.match(low) and _FLOAT_TEXT.match(high):
            return f"[{float(low)!r}:{float(high)!r}]"
    elif all(_INT_TEXT.match(c) for c in token.split(":")):
        return token
    raise Refused(f"feature_infos holds {token[:40]!r}")


def _header(header: dict[str, str], n_features: int, n_classes: int) -> dict[str, str]:
    """The header values LightGBM reads, each re-spelt from what was checked."""
    out = {key: header[key] for key in ("version", "num_class", "max_feature_idx")}
    for key in ("num_tree_per_iteration", "label_index"):
        if key in header:
            out[key] = str(_int(header[key], key, 0, n_classes))
    out["objective"] = _objective(header.get("objective", ""), n_classes)[1]
    if "average_output" in header:
        if header["average_output"]:
            raise Refused("average_output takes no value")
        out["average_output"] = ""
    out["feature_names"] = header.get("feature_names", "")
    if "feature_infos" in header:
        infos = header["feature_infos"].split(" ")
        if len(infos) != n_features:
            raise Refused(f"feature_infos must have {n_features} entries")
        out["feature_infos"] = " ".join(map(_feature_info, infos))
    if "monotone_constraints" in header:
        values = header["monotone_constraints"].split(" ")
        if len(values) != n_features or any(v not in ("-1", "0", "1") for v in values):
            raise Refused(f"monotone_constraints must be {n_features} of -1, 0 and 1")
        out["monotone_constraints"] = header["monotone_constraints"]
    return out


def _blocks(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    lines = text.split("\n")
    if not lines or lines[0].strip() != "tree":
        raise Refused("the first line is not 'tree'")
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
    raise Refused(f"no {_END!r} line")


def check_text(text: str, limits: StoreLimits) -> tuple[str, LightGBMInfo]:  # noqa: C901 (one check per field of an untrusted file, read top to bottom)
    """Check a model text; return the rebuilt text LightGBM will parse, and what was found."""
    if text.count("\nTree=") > limits.max_trees:
        raise Refused(f"more than {limits.max_trees} trees (store.limits.max_trees)")
    # Before the split into lines (about 60 bytes of memory per line, however short): about
    # 20 lines per tree, one per feature after the trees (importances), the parameters.
    max_lines = 4096 + 32 * limits.max_trees + limits.max_features
    if text.count("\n") > max_lines:
        raise Refused(f"more than {max_lines} lines, more than a model within the caps holds")
    header_lines, tree_blocks = _blocks(text)
    header = _key_values(header_lines, _HEADER_KEYS + _DROPPED_HEADER, "header")
    if header.get("version") not in ("v2", "v3", "v4"):
        raise Refused(f"model format version {header.get('version')!r} is not v2, v3 or v4")
    n_features = (
        _int(header.get("max_feature_idx"), "max_feature_idx", 0, limits.max_features - 1) + 1
    )
    n_classes = _int(header.get("num_class"), "num_class", 1, limits.max_features)
    per_iteration = _int(
        header.get("num_tree_per_iteration"), "num_tree_per_iteration", 1, n_classes
    )
    objective, _ = _objective(header.get("objective", ""), n_classes)
    if objective in _CLASSIFICATION:
        task = "classification"
        if (objective == "binary") != (n_classes == 1) or per_iteration != n_classes:
            raise Refused(f"objective {objective!r} with num_class {n_classes}")
    elif objective in _REGRESSION and n_classes == 1:
        task = "regression"
    else:
        raise Refused(f"objective {objective[:40] or 'custom'!r} is not supported")
    if not tree_blocks or len(tree_blocks) % per_iteration:
        raise Refused(f"{len(tree_blocks)} trees for {per_iteration} per iteration")
    names = header.get("feature_names", "").split(" ")
    if len(names) != n_features:
        raise Refused(f"feature_names must have {n_features} entries")
    rebuilt = _header(header, n_features, n_classes)
    out = ["tree", *(f"{k}={v}" if v or k != "average_output" else k for k, v in rebuilt.items())]
    out.append("")
    cap = min(limits.max_tree_nodes, limits.max_features)
    total = 0
    for i, (title, lines) in enumerate(tree_blocks):
        where = f"tree {i}"
        if title != f"Tree={i}":
            raise Refused(f"{where}: expected 'Tree={i}', found {title[:40]!r}")
        if "is_linear=1" in lines:  # before its own keys (leaf_const, ...) count as unknown
            raise Refused(f"{where}: linear trees are not supported")
        tree_lines, n_nodes = _check_tree(
            _key_values(lines, _TREE_KEYS, where), n_features, cap, where
        )
        total += n_nodes
        if total > limits.max_tree_nodes:
            raise Refused(f"more than {limits.max_tree_nodes} nodes (store.limits.max_tree_nodes)")
        out += [title, *tree_lines, "", ""]
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
            raise Refused(f"{len(data)} bytes, over the cap of {limits.max_file_bytes}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refused("not UTF-8 text") from exc
        return check_text(text, limits)
    except Refused as exc:
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


def _lightgbm_bytes(model: Any, name: str) -> tuple[bytes, str]:
    if isinstance(model, str):
        return model.encode(), "text"
    booster = getattr(model, "booster_", model)
    if not hasattr(booster, "model_to_string"):
        raise PublishError(name, f"not a LightGBM model: {type(model).__name__}")
    return booster.model_to_string().encode(), "text"


def _open_lightgbm(
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
    """Check the text model, load its re-spelt text."""
    text, linfo = lightgbm_text(data, limits=limits, name=name, version=version, filename=filename)
    lbooster = load_lightgbm(text, linfo, name=name)
    found = {
        "n_features": linfo.n_features,
        "task": linfo.task,
        "n_outputs": linfo.n_outputs,
        "feature_names": linfo.feature_names,
        "estimator": f"lightgbm.gbdt {linfo.objective}",
    }
    return (
        text.encode(),
        lbooster,
        make_lightgbm_predictor(lbooster, linfo, threads=threads),
        found,
    )


def _imported_lightgbm(
    data: bytes, *, suffix: str, name: str, filename: str, limits: StoreLimits
) -> bytes:
    lightgbm_text(data, limits=limits, name=name, version=None, filename=filename)
    return data


def _structure(data: bytes) -> dict[str, Any]:
    """Trees and nodes of stored (canonical text) bytes."""
    lines = data.decode().splitlines()
    leaves = [int(x.split("=", 1)[1]) for x in lines if x.startswith("num_leaves=")]
    return {"trees": len(leaves), "nodes": sum(2 * n - 1 for n in leaves)}


#: The LightGBM format: a text model, stored re-spelt.
CODEC = NativeCodec(
    name="lightgbm",
    extensions=(".txt",),
    how_to_convert="booster.save_model('model.txt') (or model.booster_.save_model)",
    filename=LIGHTGBM_FILE,
    libraries=("lightgbm",),
    stored_fmt="text",
    bytes_fmt="text",
    serialise=_lightgbm_bytes,
    open=_open_lightgbm,
    imported=_imported_lightgbm,
    structure=_structure,
)
