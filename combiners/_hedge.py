"""``hedge``: online multiplicative weights (Freund & Schapire's Hedge)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from combiners._base import BaseCombiner
from combiners._explain import Explanation, linear_terms
from combiners._registry import register
from combiners._validation import (
    BoolArray,
    FloatArray,
    IntArray,
    Task,
    available_outputs,
    check_targets,
)
from combiners.errors import InvalidParameterError

__all__ = ["Hedge"]


@register("hedge")
class Hedge(BaseCombiner):
    """Weighted mean whose weights follow Hedge: ``w_i *= exp(-eta * loss_i)`` per labelled batch.

    The loss of model ``i`` on a batch is its mean log-loss, with probabilities clipped to
    ``[eps, 1]`` (classification), or its mean squared error divided by the largest mean
    squared error among the available models, so it lies in ``[0, 1]`` whatever the scale of
    ``y`` (regression). ``fit`` starts from equal weights and applies one update from the
    held-out data. Weights are kept as log-weights (no underflow) and renormalised over the
    available models in ``combine``; a model unavailable in a labelled batch receives the mean
    loss of the available ones, so its relative weight does not move.

    Plain Hedge never forgets: once a model has led for long, the others' weights are so small
    that no run of losses after a drift gives them back. With ``share`` > 0 every live update
    (``partial_fit``) is followed by Herbster and Warmuth's fixed share, ``w = (1 - share) w +
    share / n_models``: no weight falls below ``share / n_models``, so the weights follow the
    model that is best *now* (tracking the best expert). ``fit`` applies no share.

    Parameters
    ----------
    eta : float, default 0.5
        Learning rate (> 0).
    eps : float, default 1e-6
        Probability clip for the log-loss (in (0, 1)); bounds a model's loss by ``-log(eps)``.
    share : float, default 0.01
        Fixed share mixed back after each live update, in [0, 1); 0 is plain Hedge.
    task : {"classification", "regression"}, optional

    Attributes
    ----------
    log_weights_ : ndarray of shape (n_models,)
        Unnormalised log-weights (maximum 0).
    weights_ : ndarray of shape (n_models,)
        Normalised weights (a property over ``log_weights_``).
    n_updates_ : int
        Labelled batches seen, the held-out one included.

    Examples
    --------
    >>> import numpy as np
    >>> from combiners import get_combiner
    >>> P = np.array([[[0.9, 0.1]], [[0.2, 0.8]]])
    >>> comb = get_combiner("hedge", eta=1.0).fit(P, [0])  # eta=1: w proportional to p(y)
    >>> comb.weights_
    array([0.81818182, 0.18181818])
    >>> comb.combine(P)
    array([[0.77272727, 0.22727273]])
    """

    online: ClassVar[bool] = True
    _scalar_state = (*BaseCombiner._scalar_state, "n_updates_")
    _array_state = ("log_weights_",)

    def __init__(
        self, *, eta: float = 0.5, eps: float = 1e-6, share: float = 0.01, task: Task | None = None
    ) -> None:
        self.eta = eta
        self.eps = eps
        self.share = share
        self.task = task

    def validate_params(self) -> None:
        super().validate_params()
        if not (_is_number(self.eta) and self.eta > 0):
            raise InvalidParameterError(self._label, "eta", "a finite number > 0", self.eta)
        if not (_is_number(self.eps) and 0 < self.eps < 1):
            raise InvalidParameterError(self._label, "eps", "a number in (0, 1)", self.eps)
        if not (_is_number(self.share) and 0 <= self.share < 1):
            raise InvalidParameterError(self._label, "share", "a number in [0, 1)", self.share)

    @property
    def weights_(self) -> FloatArray:
        return _normalise(self.log_weights_)

    def fit(self, P: ArrayLike, y: ArrayLike, X: ArrayLike | None = None) -> Hedge:
        """Equal weights, then one Hedge update from held-out ``P`` and ``y``; return self."""
        P_arr, y_arr = self._fit_inputs(P, y)
        self.log_weights_ = np.zeros(self.n_models_)
        self.n_updates_ = 0
        if P_arr.shape[1] > 0:
            self._update(P_arr, y_arr, None)
        return self

    def partial_fit(
        self,
        P: ArrayLike,
        y: ArrayLike,
        X: ArrayLike | None = None,
        available: ArrayLike | None = None,
    ) -> Hedge:
        """One Hedge update from a labelled batch ``P`` ``(n_models, n_events, n_outputs)``."""
        P_arr, mask = self._combine_inputs(P, available, "partial_fit")
        available_outputs(P_arr, mask)
        y_arr = check_targets(y, self.task_, P_arr.shape[1], self.n_outputs_, self._label)
        if P_arr.shape[1] > 0:
            self._update(P_arr, y_arr, mask)
            if self.share > 0:
                w = (1 - self.share) * self.weights_ + self.share / self.n_models_
                self.log_weights_ = np.log(w / w.max())
        return self

    def _update(self, P: FloatArray, y: FloatArray | IntArray, mask: BoolArray | None) -> None:
        P_av = P if mask is None else P[mask]
        if self.task_ == "classification":
            p_true = P_av[:, np.arange(P_av.shape[1]), y]
            loss = -np.log(np.clip(p_true, self.eps, 1.0)).mean(axis=1)
        else:
            mse = ((P_av - y) ** 2).mean(axis=(1, 2))
            top = mse.max()
            loss = mse / top if top > 0 else np.zeros_like(mse)
        losses = np.full(self.n_models_, loss.mean())
        losses[mask if mask is not None else slice(None)] = loss
        log_w = self.log_weights_ - self.eta * losses
        self.log_weights_ = log_w - log_w.max()
        self.n_updates_ += 1

    def combine(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> FloatArray:
        """Return ``(n_events, n_outputs)``: the Hedge-weighted mean over available models."""
        P_arr, mask = self._combine_inputs(P, available)
        P_av = available_outputs(P_arr, mask)
        w = _normalise(self.log_weights_ if mask is None else self.log_weights_[mask])
        out: FloatArray = np.tensordot(w, P_av, axes=1)
        return out

    def model_weights(self) -> FloatArray:
        """The normalised Hedge weights now, ``(n_models,)``."""
        self._check_fitted("model_weights")
        return self.weights_

    def explain(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> Explanation:
        """Model ``i`` contributes ``w_i P_i`` (weights renormalised over the available)."""
        P_arr, mask = self._combine_inputs(P, available, "explain")
        available_outputs(P_arr, mask)
        w = np.zeros(self.n_models_)
        w[mask if mask is not None else slice(None)] = _normalise(
            self.log_weights_ if mask is None else self.log_weights_[mask]
        )
        return Explanation(linear_terms(w, P_arr, mask), np.zeros(P_arr.shape[1:]))


def _normalise(log_w: FloatArray) -> FloatArray:
    w = np.exp(log_w - log_w.max())
    out: FloatArray = w / w.sum()
    return out


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float | np.number)
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
    )
