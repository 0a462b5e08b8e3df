"""Input checks shared by every combiner: shapes, finiteness, targets, weights, masks.

All checks are vectorised; none loops over events.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from combiners.errors import (
    InvalidParameterError,
    NoModelsAvailableError,
    NonFiniteError,
    ShapeError,
    TargetError,
    WeightsError,
)

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

#: Tolerance on row sums when deciding that ``P`` holds probabilities.
PROBA_ATOL = 1e-6


def check_outputs(P: ArrayLike, what: str = "P") -> FloatArray:
    """Return ``P`` as a float64 array of shape ``(n_models, n_events, n_outputs)``."""
    try:
        arr = np.asarray(P, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeError(what, "a numeric array (n_models, n_events, n_outputs)", repr(P)) from exc
    if arr.ndim != 3:
        raise ShapeError(what, "a 3-d array (n_models, n_events, n_outputs)", f"shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[2] == 0:
        raise ShapeError(what, "at least one model and one output", f"shape {arr.shape}")
    return arr


def check_finite(arr: FloatArray, what: str) -> None:
    """Raise :class:`NonFiniteError` if ``arr`` holds NaN or infinity."""
    finite = np.isfinite(arr)
    if not finite.all():
        raise NonFiniteError(what, int(arr.size - np.count_nonzero(finite)), int(arr.size))


def check_available(available: ArrayLike | None, n_models: int, combiner: str) -> BoolArray | None:
    """Return the availability mask of shape ``(n_models,)``, or None when every model is up."""
    if available is None:
        return None
    mask = np.asarray(available)
    if mask.shape != (n_models,) or not (mask.dtype == np.bool_ or mask.dtype.kind in "iu"):
        raise ShapeError(
            "available", f"a bool array of shape ({n_models},)", f"{mask.dtype} {mask.shape}"
        )
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise NoModelsAvailableError(combiner, n_models)
    return None if mask.all() else mask


def available_outputs(P: FloatArray, mask: BoolArray | None) -> FloatArray:
    """The rows of ``P`` for available models, checked for finiteness."""
    P_av = P if mask is None else P[mask]
    check_finite(P_av, "P (available models)")
    return P_av


def fill_missing(P: FloatArray, mask: BoolArray | None) -> FloatArray:
    """Replace unavailable models' rows with the mean of the available ones (a copy)."""
    if mask is None:
        return P
    filled = np.empty_like(P)
    filled[mask] = P[mask]
    filled[~mask] = P[mask].mean(axis=0)
    return filled


def is_probabilities(P: FloatArray) -> bool:
    """True when every row of ``P`` is non-negative and sums to 1 within ``PROBA_ATOL``."""
    return bool(
        np.all(P >= -PROBA_ATOL) and np.allclose(P.sum(axis=-1), 1.0, rtol=0, atol=PROBA_ATOL)
    )


def infer_task(P: FloatArray, y: ArrayLike) -> Task:
    """Classification when ``y`` is integer-valued and ``P`` rows are probabilities."""
    y_arr = np.asarray(y)
    integer_valued = y_arr.dtype.kind in "iub" or (
        y_arr.dtype.kind == "f" and bool(np.all(np.isfinite(y_arr) & (y_arr == np.round(y_arr))))
    )
    return "classification" if integer_valued and is_probabilities(P) else "regression"


def check_task(task: object, combiner: str, supported: tuple[Task, ...] = TASKS) -> Task | None:
    """Validate a ``task`` parameter (None means: infer in fit)."""
    if task is None:
        return None
    if task not in supported:
        raise InvalidParameterError(
            combiner, "task", " or ".join(repr(t) for t in (*supported, None)), task
        )
    return task


def check_targets(
    y: ArrayLike, task: Task, n_events: int, n_outputs: int, combiner: str
) -> FloatArray | IntArray:
    """Classification ``y`` as int64 ``(n_events,)``; regression as ``(n_events, n_outputs)``."""
    y_arr = np.asarray(y)
    if y_arr.dtype.kind not in "iubf":
        raise TargetError(combiner, "numbers", f"dtype {y_arr.dtype}")
    if task == "classification":
        if y_arr.ndim == 2 and y_arr.shape[1] == 1:
            y_arr = y_arr[:, 0]
        if y_arr.shape != (n_events,):
            raise ShapeError("y", f"shape ({n_events},) of class indices", f"shape {y_arr.shape}")
        check_finite(y_arr.astype(np.float64), "y")
        if np.any(y_arr != np.round(y_arr)) or np.any(y_arr < 0) or np.any(y_arr >= n_outputs):
            bad = y_arr[(y_arr != np.round(y_arr)) | (y_arr < 0) | (y_arr >= n_outputs)]
            raise TargetError(
                combiner, f"class indices 0..{n_outputs - 1} (columns of P)", f"{bad[:5]!r}"
            )
        return y_arr.astype(np.int64)
    y_f = y_arr.astype(np.float64)
    if y_f.ndim == 1 and n_outputs == 1:
        y_f = y_f[:, None]
    if y_f.shape != (n_events, n_outputs):
        expected = f"({n_events},) or " if n_outputs == 1 else ""
        raise ShapeError("y", f"shape {expected}({n_events}, {n_outputs})", f"shape {y_f.shape}")
    check_finite(y_f, "y")
    return y_f


def check_features(X: ArrayLike | None, n_events: int, n_features: int | None) -> FloatArray:
    """Return ``X`` as float64 ``(n_events, n_features)``; required when the strategy uses it."""
    if X is None:
        raise ShapeError("X", f"features of shape ({n_events}, n_features)", "None")
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n_events:
        raise ShapeError("X", f"shape ({n_events}, n_features)", f"shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ShapeError("X", f"{n_features} features (as in fit)", f"{arr.shape[1]}")
    check_finite(arr, "X")
    return arr


def check_weights(
    weights: ArrayLike | None, n_models: int, combiner: str, *, allow_negative: bool = False
) -> FloatArray:
    """Return weights of shape ``(n_models,)``; None gives equal weights."""
    if weights is None:
        return np.ones(n_models)
    w = check_weight_values(weights, combiner, allow_negative=allow_negative)
    if w.shape != (n_models,):
        raise WeightsError(combiner, "weights", f"{n_models} weights, one per model", w.tolist())
    return w


def check_weight_values(
    weights: ArrayLike, combiner: str, *, allow_negative: bool = False
) -> FloatArray:
    """Length-independent checks on weights: 1-d, finite, non-negative, not all zero."""
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise WeightsError(combiner, "weights", "a 1-d list of numbers", weights) from exc
    if w.ndim != 1 or w.size == 0:
        raise WeightsError(combiner, "weights", "a non-empty 1-d list of numbers", weights)
    if not np.all(np.isfinite(w)):
        raise WeightsError(combiner, "weights", "finite numbers", w.tolist())
    if not allow_negative and np.any(w < 0):
        raise WeightsError(combiner, "weights", "non-negative numbers", w.tolist())
    if not allow_negative and not np.any(w > 0):
        raise WeightsError(combiner, "weights", "not all zero", w.tolist())
    return w


def renormalised(w: FloatArray, mask: BoolArray | None, combiner: str) -> FloatArray:
    """Weights of the available models, divided by their sum (which must be positive)."""
    w_av = w if mask is None else w[mask]
    total = w_av.sum()
    if not total > 0:
        raise NoModelsAvailableError(combiner, w.size, "the available models' weights sum to zero")
    shares: FloatArray = w_av / total
    return shares
