"""Reference profiles: what the live features and outputs are compared with.

Built where the models are fitted (``streamfuse train``, ``streamfuse fit``) and stored with
:meth:`model_store.ModelStore.publish_profile` as ``reference``:

- per feature: quantile bin edges and the reference sample's shares in those bins
  (:mod:`.stats`), its missing share (NaN) and its range (smallest and largest value);
- per model and per strategy (a *scope*): the distribution of its held-out outputs
  (classification: the share of each predicted class; regression: quantile bins of the value),
  its held-out accuracy, and, for classifiers, an isotonic calibration of its confidence (the
  top class probability) to the chance that the prediction is right, fitted on the held-out
  set. The mean calibrated confidence over live events is the estimated accuracy
  (confidence-based performance estimation): it needs no labels, and it follows a change in
  the inputs, not a change of the concept behind the labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.drift.stats import bin_counts, quantile_edges, shares

__all__ = [
    "CALIBRATION_GRID",
    "DEFAULT_BINS",
    "PROFILE_NAME",
    "FeatureReference",
    "OutputReference",
    "ProfileError",
    "feature_reference",
    "output_references",
    "profile_arrays",
    "read_profile",
    "sample_rows",
]

PROFILE_NAME = "reference"
DEFAULT_BINS = 10
CALIBRATION_GRID = np.linspace(0.0, 1.0, 201)  # confidence points the calibration is kept at
FORMAT = 1


class ProfileError(ValueError):
    """A stored profile that does not describe what is served (shapes, names, format)."""


@dataclass(frozen=True)
class FeatureReference:
    """Reference of ``n_features`` features: ``edges`` (n_features, n_bins - 1), ``shares``
    (n_features, n_bins), ``missing``, ``low``, ``high`` (n_features,)."""

    edges: np.ndarray
    shares: np.ndarray
    missing: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.edges.shape[0])


@dataclass(frozen=True)
class OutputReference:
    """One scope's held-out outputs: ``shares`` over predicted classes (classification) or
    over the value's quantile bins ``edges`` (regression); ``calibration`` (classifiers):
    the chance of a right prediction at each confidence of :data:`CALIBRATION_GRID`."""

    scope: str
    name: str
    kind: str
    shares: np.ndarray
    edges: np.ndarray | None = None
    calibration: np.ndarray | None = None
    heldout_accuracy: float | None = None


def feature_reference(X: np.ndarray, n_bins: int = DEFAULT_BINS) -> FeatureReference:
    """The reference of the features of sample ``X`` (n_rows, n_features)."""
    X = np.asarray(X, dtype=np.float64)
    missing = np.isnan(X).mean(axis=0)
    edges = np.empty((X.shape[1], n_bins - 1))
    ref_shares = np.empty((X.shape[1], n_bins))
    low, high = np.empty(X.shape[1]), np.empty(X.shape[1])
    for j in range(X.shape[1]):  # per column only because NaNs differ per column (fit time)
        col = X[:, j][~np.isnan(X[:, j])]
        if col.size == 0:
            raise ProfileError(f"feature {j} has no value in the reference sample")
        edges[j] = quantile_edges(col[:, None], n_bins)[0]
        ref_shares[j] = shares(bin_counts(col[:, None], edges[j : j + 1]))[0]
        low[j], high[j] = col.min(), col.max()
    return FeatureReference(edges, ref_shares, missing, low, high)


def sample_rows(reference: FeatureReference, n: int, seed: int = 0) -> np.ndarray:
    """``n`` synthetic rows (n, n_features) with each feature's reference distribution: a bin
    drawn by its share, then a value uniformly inside it (the outer bins end at the reference's
    smallest and largest value). Features are drawn independently: rows to warm a model on
    (its runtime's paths and shapes) when no real row is at hand, not a sample of the data."""
    rng = np.random.default_rng(seed)
    weights = np.clip(np.nan_to_num(reference.shares, nan=0.0), 0.0, None)
    totals = weights.sum(axis=1, keepdims=True)
    weights = np.where(
        totals > 0, weights / np.where(totals > 0, totals, 1.0), 1.0 / weights.shape[1]
    )
    bounds = np.column_stack([reference.low, reference.edges, reference.high])
    bounds = np.nan_to_num(np.maximum.accumulate(bounds, axis=1), nan=0.0, posinf=0.0, neginf=0.0)
    last = weights.shape[1] - 1
    bins = (rng.random((n, 1, weights.shape[0])) > np.cumsum(weights, axis=1).T[None]).sum(axis=1)
    bins = np.minimum(bins, last)
    features = np.arange(weights.shape[0])
    low, high = bounds[features, bins], bounds[features, bins + 1]
    rows: np.ndarray = low + rng.random(low.shape) * (high - low)
    return rows


def _calibration(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(confidence, correct.astype(np.float64))
    return np.asarray(iso.predict(CALIBRATION_GRID), dtype=np.float64)


def output_references(
    kind: str,
    P: np.ndarray,
    model_names: Sequence[str],
    strategy_outputs: Mapping[str, np.ndarray],
    y: np.ndarray,
    n_bins: int = DEFAULT_BINS,
) -> list[OutputReference]:
    """Each model's (``P``: (n_models, n_rows, n_outputs)) and strategy's
    (``strategy_outputs``: name to (n_rows, n_outputs)) held-out reference, ``y`` the held-out
    truth (class index or value)."""
    scoped = [("model", n, P[m]) for m, n in enumerate(model_names)]
    scoped += [("strategy", n, out) for n, out in strategy_outputs.items()]
    refs = []
    for scope, name, out in scoped:
        if kind == "classification":
            predicted = out.argmax(axis=1)
            counts = np.bincount(predicted, minlength=out.shape[1])
            correct = predicted == np.asarray(y, dtype=np.int64)
            refs.append(
                OutputReference(
                    scope,
                    name,
                    kind,
                    shares(counts),
                    calibration=_calibration(out.max(axis=1), correct),
                    heldout_accuracy=float(correct.mean()),
                )
            )
        else:
            value = out[:, :1]
            edges = quantile_edges(value, n_bins)
            refs.append(
                OutputReference(scope, name, kind, shares(bin_counts(value, edges))[0], edges[0])
            )
    return refs


def profile_arrays(
    features: FeatureReference,
    outputs: Sequence[OutputReference],
    feature_names: Sequence[str] | None,
    n_rows: Mapping[str, int],
    features_from: str = "heldout",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` for :meth:`~model_store.ModelStore.publish_profile`;
    ``features_from`` says which rows the features' reference was made of (``train``,
    ``heldout``, or a ``reference`` sample given to ``store publish``)."""
    meta: dict[str, Any] = {
        "format": FORMAT,
        "features_from": features_from,
        "n_bins": int(features.shares.shape[1]),
        "feature_names": list(feature_names) if feature_names is not None else None,
        "scopes": [[o.scope, o.name, o.kind] for o in outputs],
        "heldout_accuracy": {f"{o.scope}:{o.name}": o.heldout_accuracy for o in outputs},
        "n_rows": dict(n_rows),
    }
    arrays = {
        "feature_edges": features.edges,
        "feature_shares": features.shares,
        "feature_missing": features.missing,
        "feature_low": features.low,
        "feature_high": features.high,
        "calibration_grid": CALIBRATION_GRID,
    }
    for i, o in enumerate(outputs):
        arrays[f"output_{i}_shares"] = o.shares
        if o.edges is not None:
            arrays[f"output_{i}_edges"] = o.edges
        if o.calibration is not None:
            arrays[f"output_{i}_calibration"] = o.calibration
    return meta, arrays


def read_profile(
    meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], n_features: int
) -> tuple[FeatureReference, list[OutputReference]]:
    """The references in a stored profile, checked against ``n_features`` served features.

    Every field the monitor reads is checked here, so a profile that gets through cannot fail
    later on a batch; anything else wrong with it (a field of another type, an array of another
    dtype) is a :class:`ProfileError` too, never another exception.

    Raises
    ------
    ProfileError
        Another format, missing arrays, fields or shapes that do not fit.
    """
    try:
        return _read_profile(meta, arrays, n_features)
    except ProfileError:
        raise
    except Exception as exc:  # a malformed profile is refused, whatever it trips over
        raise ProfileError(f"malformed profile ({type(exc).__name__}: {exc})"[:300]) from exc


_SCOPES = ("model", "strategy")
_KINDS = ("classification", "regression")


def _float_array(arrays: Mapping[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    try:
        value = arrays[key]
    except KeyError:
        raise ProfileError(f"profile has no {key!r} array") from None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu" or value.ndim != ndim:
        raise ProfileError(f"profile's {key} is not a {ndim}-d array of numbers")
    out = np.asarray(value, dtype=np.float64)
    if np.isinf(out).any():
        raise ProfileError(f"profile's {key} holds an infinite value")
    return out


def _read_profile(  # noqa: C901 (one check per field of an untrusted profile)
    meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], n_features: int
) -> tuple[FeatureReference, list[OutputReference]]:
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
        raise ProfileError(f"profile format {meta.get('format')!r}, expected {FORMAT}")
    features = FeatureReference(
        _float_array(arrays, "feature_edges", 2),
        _float_array(arrays, "feature_shares", 2),
        _float_array(arrays, "feature_missing", 1),
        _float_array(arrays, "feature_low", 1),
        _float_array(arrays, "feature_high", 1),
    )
    grid = _float_array(arrays, "calibration_grid", 1)
    n_bins = features.shares.shape[-1]
    expected = {
        "edges": (n_features, n_bins - 1),
        "shares": (n_features, n_bins),
        "missing": (n_features,),
        "low": (n_features,),
        "high": (n_features,),
    }
    for key, shape in expected.items():
        if getattr(features, key).shape != shape:
            raise ProfileError(
                f"profile's feature_{key} has shape {getattr(features, key).shape}, "
                f"expected {shape} for {n_features} features"
            )
    if n_bins < 1:
        raise ProfileError("profile's features have no bins")
    if not np.array_equal(grid, CALIBRATION_GRID):
        raise ProfileError("profile's calibration grid is not this version's")
    scopes = meta.get("scopes", [])
    accuracies = meta.get("heldout_accuracy", {})
    if not isinstance(scopes, list):
        raise ProfileError("profile's 'scopes' is not a list")
    if not isinstance(accuracies, dict):
        raise ProfileError("profile's 'heldout_accuracy' is not an object")
    outputs = []
    for i, entry in enumerate(scopes):
        if not (
            isinstance(entry, list) and len(entry) == 3 and all(isinstance(x, str) for x in entry)
        ):
            raise ProfileError(f"profile's scopes[{i}] is not [scope, name, kind]")
        scope, name, kind = entry
        if scope not in _SCOPES or kind not in _KINDS:
            raise ProfileError(f"profile's scopes[{i}] is {entry!r}: unknown scope or kind")
        outputs.append(_output(arrays, accuracies, i, scope, name, kind))
    if len({o.kind for o in outputs}) > 1:
        raise ProfileError("profile's scopes are of more than one kind")
    if len({(o.scope, o.name) for o in outputs}) != len(outputs):
        raise ProfileError("profile names a scope twice")
    return features, outputs


def _output(
    arrays: Mapping[str, np.ndarray],
    accuracies: Mapping[str, Any],
    i: int,
    scope: str,
    name: str,
    kind: str,
) -> OutputReference:
    out_shares = _float_array(arrays, f"output_{i}_shares", 1)
    if out_shares.size == 0:
        raise ProfileError(f"profile's output_{i}_shares is empty ({scope} {name})")
    edges = calibration = None
    if kind == "regression":
        edges = _float_array(arrays, f"output_{i}_edges", 1)
        if edges.shape != (out_shares.size - 1,):
            raise ProfileError(f"profile's output_{i}_edges do not fit its shares")
    if f"output_{i}_calibration" in arrays:
        calibration = _float_array(arrays, f"output_{i}_calibration", 1)
        if calibration.shape != CALIBRATION_GRID.shape or kind != "classification":
            raise ProfileError(f"profile's output_{i}_calibration has the wrong shape")
    accuracy = accuracies.get(f"{scope}:{name}")
    if accuracy is not None and (
        isinstance(accuracy, bool)
        or not isinstance(accuracy, int | float)
        or not 0.0 <= accuracy <= 1.0
    ):
        raise ProfileError(f"profile's heldout_accuracy of {scope}:{name} is not in [0, 1]")
    return OutputReference(
        scope,
        name,
        kind,
        out_shares,
        edges,
        calibration,
        None if accuracy is None else float(accuracy),
    )
