"""Linear pools: ``weighted_average`` (convex) and ``weighted_sum`` (weights plus bias)."""

from __future__ import annotations

from typing import Self

import numpy as np
from numpy.typing import ArrayLike

from combiners._base import BaseCombiner
from combiners._explain import Explanation, linear_terms
from combiners._registry import register
from combiners._validation import (
    FloatArray,
    IntArray,
    Task,
    available_outputs,
    check_weight_values,
    check_weights,
    renormalised,
)
from combiners.errors import InvalidParameterError, NoModelsAvailableError, ShapeError

__all__ = ["WeightedAverage", "WeightedSum"]


class FixedWeights(BaseCombiner):
    """Base of the strategies whose only state is one weight per model (given or equal)."""

    _array_state = ("weights_",)

    def __init__(self, *, weights: ArrayLike | None = None, task: Task | None = None) -> None:
        self.weights = weights
        self.task = task

    def validate_params(self) -> None:
        super().validate_params()
        if self.weights is not None:
            check_weight_values(self.weights, self._label)

    def fit(self, P: ArrayLike, y: ArrayLike, X: ArrayLike | None = None) -> Self:
        """Check ``P`` ``(n_models, n_events, n_outputs)``, ``y`` and the weights; return self."""
        self._fit_inputs(P, y)
        self.weights_ = check_weights(self.weights, self.n_models_, self._label)
        return self

    def model_weights(self) -> FloatArray:
        """The weights as shares of their total, ``(n_models,)``."""
        self._check_fitted("model_weights")
        shares: FloatArray = self.weights_ / self.weights_.sum()
        return shares

    def _available_shares(self, mask: np.ndarray | None) -> FloatArray:
        """The weights renormalised over the available models, 0 for the others."""
        w = self.weights_ if mask is None else np.where(mask, self.weights_, 0.0)
        total = w.sum()
        if not total > 0:
            raise NoModelsAvailableError(self._label, self.n_models_, "available weights sum to 0")
        shares: FloatArray = w / total
        return shares


@register("weighted_average")
class WeightedAverage(FixedWeights):
    """Weighted mean of the models' outputs: ``sum_i w_i P_i / sum_i w_i``.

    For regression this is scikit-learn's ``VotingRegressor(weights=...).predict``; for
    probabilities it is a convex combination, so rows stay valid probabilities.
    Models marked unavailable are dropped and the remaining weights renormalised.

    Parameters
    ----------
    weights : array-like of shape (n_models,), optional
        Non-negative, not all zero. Default: equal weights.
    task : {"classification", "regression"}, optional
        Default: inferred in ``fit``.

    Attributes
    ----------
    weights_ : ndarray of shape (n_models,)
        The weights, as given (not normalised).

    Examples
    --------
    >>> import numpy as np
    >>> from combiners import get_combiner
    >>> P = np.array([[[1.0], [2.0]], [[3.0], [6.0]]])  # 2 models, 2 events, 1 output
    >>> comb = get_combiner("weighted_average", weights=[1, 3]).fit(P, [2.5, 5.0])
    >>> comb.combine(P)
    array([[2.5],
           [5. ]])
    >>> comb.combine(P, available=[True, False])  # model 1 failed: model 0 alone
    array([[1.],
           [2.]])
    """

    def combine(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> FloatArray:
        """Return ``(n_events, n_outputs)``: the weighted mean over available models."""
        P_arr, mask = self._combine_inputs(P, available)
        P_av = available_outputs(P_arr, mask)
        w = self.weights_ if mask is None else self.weights_[mask]
        total = w.sum()
        if not total > 0:
            raise NoModelsAvailableError(self._label, self.n_models_, "available weights sum to 0")
        out: FloatArray = np.tensordot(w, P_av, axes=1) / total
        return out

    def explain(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> Explanation:
        """Model ``i`` contributes ``w_i P_i / sum(w)`` (over the available models); no base."""
        P_arr, mask = self._combine_inputs(P, available, "explain")
        available_outputs(P_arr, mask)
        terms = linear_terms(self._available_shares(mask), P_arr, mask)
        return Explanation(terms, np.zeros(P_arr.shape[1:]))


@register("weighted_sum")
class WeightedSum(BaseCombiner):
    """Linear combination with bias, ``sum_i w_i P_i + b``, learned when not given.

    Regression: weights (shared by all outputs) and a bias per output are fitted on held-out
    data by ridge least squares (``alpha`` penalises the weights, not the bias); given weights
    may be negative. If only the weights are given, the bias is the mean residual; if only the
    bias is given, the weights are fitted to ``y - bias``.

    Classification keeps valid probabilities: weights are learned non-negative (ridge NNLS on
    one-hot targets) and normalised to sum to 1, so ``sum_i w_i P_i`` is a convex combination;
    the learned bias is the mean residual per class (it sums to 0). The output is
    ``clip(sum_i w_i P_i + b, 0)`` with rows renormalised to sum to 1 (no softmax, so a zero
    bias leaves the convex combination unchanged); a row clipped to all zeros becomes uniform.

    Unavailable models are dropped and the remaining weights rescaled to the same total
    (regression), or to sum 1 (classification).

    Parameters
    ----------
    weights : array-like of shape (n_models,), optional
    bias : float or array-like of shape (n_outputs,), optional
    alpha : float, default 1.0
        Ridge penalty on the learned weights (>= 0).
    task : {"classification", "regression"}, optional

    Attributes
    ----------
    weights_ : ndarray of shape (n_models,)
    bias_ : ndarray of shape (n_outputs,)

    Examples
    --------
    >>> import numpy as np
    >>> from combiners import get_combiner
    >>> P = np.array([[[1.0], [2.0]], [[3.0], [4.0]]])
    >>> comb = get_combiner("weighted_sum", weights=[0.5, 0.25], bias=1.0).fit(P, [2.0, 3.0])
    >>> comb.combine(P)
    array([[2.25],
           [3.  ]])
    >>> y = 2 * P[0, :, 0] - 1  # learned by least squares (no penalty)
    >>> comb = get_combiner("weighted_sum", alpha=0.0).fit(P[:1], y)
    >>> comb.weights_.round(6), comb.bias_.round(6)
    (array([2.]), array([-1.]))
    """

    _array_state = ("weights_", "bias_")

    def __init__(
        self,
        *,
        weights: ArrayLike | None = None,
        bias: ArrayLike | None = None,
        alpha: float = 1.0,
        task: Task | None = None,
    ) -> None:
        self.weights = weights
        self.bias = bias
        self.alpha = alpha
        self.task = task

    def validate_params(self) -> None:
        super().validate_params()
        if self.weights is not None:
            check_weight_values(self.weights, self._label, allow_negative=True)
        if not (
            isinstance(self.alpha, int | float) and np.isfinite(self.alpha) and self.alpha >= 0
        ):
            raise InvalidParameterError(self._label, "alpha", "a finite number >= 0", self.alpha)

    def fit(self, P: ArrayLike, y: ArrayLike, X: ArrayLike | None = None) -> WeightedSum:
        """Learn (or check) weights ``(n_models,)`` and bias ``(n_outputs,)``; return self."""
        P_arr, y_arr = self._fit_inputs(P, y)
        classification = self.task_ == "classification"
        bias = self._given_bias()
        if (self.weights is None or bias is None) and P_arr.shape[1] == 0:
            raise ShapeError("P", "at least one event to learn weights and bias from", "0 events")
        target = _one_hot(y_arr, self.n_outputs_) if classification else y_arr.astype(np.float64)
        if self.weights is not None:
            w = check_weights(
                self.weights, self.n_models_, self._label, allow_negative=not classification
            )
        elif classification:
            w = self._nnls_weights(P_arr, target)
        else:
            w = self._ridge_weights(P_arr, target, bias)
        if classification:
            w = w / w.sum()
        self.weights_ = w
        self.bias_ = (
            bias if bias is not None else (target - np.tensordot(w, P_arr, axes=1)).mean(axis=0)
        )
        return self

    def _given_bias(self) -> FloatArray | None:
        if self.bias is None:
            return None
        b = np.asarray(self.bias, dtype=np.float64)
        if b.ndim == 0:
            b = np.full(self.n_outputs_, float(b))
        if b.shape != (self.n_outputs_,) or not np.all(np.isfinite(b)):
            raise InvalidParameterError(
                self._label,
                "bias",
                f"a finite number or {self.n_outputs_} finite numbers",
                self.bias,
            )
        return b

    def _nnls_weights(self, P: FloatArray, target: FloatArray) -> FloatArray:
        from scipy.optimize import nnls  # loaded only when learning

        A = P.reshape(self.n_models_, -1).T
        A_aug = np.vstack([A, np.sqrt(self.alpha) * np.eye(self.n_models_)])
        t_aug = np.concatenate([target.ravel(), np.zeros(self.n_models_)])
        w, _ = nnls(A_aug, t_aug)
        return w if w.sum() > 0 else np.ones(self.n_models_)

    def _ridge_weights(
        self, P: FloatArray, target: FloatArray, bias: FloatArray | None
    ) -> FloatArray:
        if bias is None:  # centre per output: the bias absorbs the means, unpenalised
            P = P - P.mean(axis=1, keepdims=True)
            target = target - target.mean(axis=0)
        else:
            target = target - bias
        A = P.transpose(1, 2, 0).reshape(-1, self.n_models_)
        A_aug = np.vstack([A, np.sqrt(self.alpha) * np.eye(self.n_models_)])
        t_aug = np.concatenate([target.ravel(), np.zeros(self.n_models_)])
        w: FloatArray = np.linalg.lstsq(A_aug, t_aug, rcond=None)[0]
        return w

    def combine(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> FloatArray:
        """Return ``(n_events, n_outputs)``: ``sum_i w_i P_i + b`` (probabilities kept valid)."""
        P_arr, mask = self._combine_inputs(P, available)
        P_av = available_outputs(P_arr, mask)
        if self.task_ == "classification":
            out = np.tensordot(renormalised(self.weights_, mask, self._label), P_av, axes=1)
            out = np.clip(out + self.bias_, 0.0, None)
            total = out.sum(axis=1, keepdims=True)
            uniform = np.full_like(out, 1.0 / self.n_outputs_)
            combined: FloatArray = np.divide(out, total, out=uniform, where=total > 0)
            return combined
        w = self.weights_
        if mask is not None:
            w_av = w[mask]
            if abs(w_av.sum()) <= 1e-12 * np.abs(w).sum():
                raise NoModelsAvailableError(self._label, w.size, "available weights sum to 0")
            w = w_av * (w.sum() / w_av.sum())
        result: FloatArray = np.tensordot(w, P_av, axes=1) + self.bias_
        return result

    def model_weights(self) -> FloatArray:
        """The fitted (or given) weights ``(n_models,)``; sum 1 for classification."""
        self._check_fitted("model_weights")
        return np.array(self.weights_, dtype=np.float64)

    def explain(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> Explanation:
        """Model ``i`` contributes ``w_i P_i``; the base is the bias. Classification: both
        divided by the row total after clipping, and the base also holds what clipping (or a
        row clipped to all zeros, made uniform) changed."""
        P_arr, mask = self._combine_inputs(P, available, "explain")
        available_outputs(P_arr, mask)
        w = self.weights_
        if self.task_ == "classification":
            shares = renormalised(w, mask, self._label)
            w = np.zeros(self.n_models_)
            w[mask if mask is not None else slice(None)] = shares
            terms = linear_terms(w, P_arr, mask)
            clipped = np.clip(terms.sum(axis=0) + self.bias_, 0.0, None)
            total = clipped.sum(axis=1, keepdims=True)
            scale = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
            terms = terms * scale
            return Explanation(terms, self.combine(P_arr, available=mask) - terms.sum(axis=0))
        if mask is not None:
            w_av = np.where(mask, w, 0.0)
            if abs(w_av.sum()) <= 1e-12 * np.abs(w).sum():
                raise NoModelsAvailableError(self._label, w.size, "available weights sum to 0")
            w = w_av * (w.sum() / w_av.sum())
        terms = linear_terms(w, P_arr, mask)
        return Explanation(terms, np.broadcast_to(self.bias_, P_arr.shape[1:]).copy())


def _one_hot(y: FloatArray | IntArray, n_outputs: int) -> FloatArray:
    return np.eye(n_outputs)[y.astype(np.int64)]
