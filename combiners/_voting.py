"""Voting over classifiers: ``soft_vote`` (mean probabilities) and ``hard_vote`` (label votes)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from combiners._explain import Explanation, linear_terms
from combiners._registry import register
from combiners._validation import (
    FloatArray,
    Task,
    available_outputs,
    renormalised,
)
from combiners._weighted import FixedWeights, WeightedAverage

__all__ = ["HardVote", "SoftVote"]


@register("soft_vote")
class SoftVote(WeightedAverage):
    """Weighted mean of class probabilities, as ``VotingClassifier(voting="soft")``.

    ``combine`` equals ``VotingClassifier(voting="soft", weights=...).predict_proba`` (to
    rounding, well within 1e-9). Unavailable models are dropped and the weights renormalised.

    Parameters
    ----------
    weights : array-like of shape (n_models,), optional
        Non-negative, not all zero. Default: equal weights.
    task : {"classification"}, optional

    Attributes
    ----------
    weights_ : ndarray of shape (n_models,)

    Examples
    --------
    >>> import numpy as np
    >>> from combiners import get_combiner
    >>> P = np.array([[[0.9, 0.1]], [[0.3, 0.7]]])  # 2 models, 1 event, 2 classes
    >>> get_combiner("soft_vote", weights=[1, 2]).fit(P, [1]).combine(P)
    array([[0.5, 0.5]])
    """

    supported_tasks: ClassVar[tuple[Task, ...]] = ("classification",)


@register("hard_vote")
class HardVote(FixedWeights):
    """Weighted majority vote of each model's predicted class (its argmax).

    The output row is the weighted vote share of each class, so it sums to 1 and its argmax is
    ``VotingClassifier(voting="hard", weights=...).predict``, ties included: votes are summed
    in model order like ``np.bincount``, and ``np.argmax`` resolves ties to the lowest class
    index, as scikit-learn does. Unavailable models do not vote.

    Parameters
    ----------
    weights : array-like of shape (n_models,), optional
        Non-negative, not all zero. Default: one vote per model.
    task : {"classification"}, optional

    Attributes
    ----------
    weights_ : ndarray of shape (n_models,)

    Examples
    --------
    >>> import numpy as np
    >>> from combiners import get_combiner
    >>> P = np.array([[[0.6, 0.4]], [[0.2, 0.8]], [[0.1, 0.9]]])  # votes: 0, 1, 1
    >>> get_combiner("hard_vote", weights=[2, 1, 0.5]).fit(P, [0]).combine(P)
    array([[0.57142857, 0.42857143]])
    """

    supported_tasks: ClassVar[tuple[Task, ...]] = ("classification",)

    def combine(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> FloatArray:
        """Return ``(n_events, n_classes)``: weighted vote shares over available models."""
        P_arr, mask = self._combine_inputs(P, available)
        P_av = available_outputs(P_arr, mask)
        w = self.weights_ if mask is None else self.weights_[mask]
        renormalised(w, None, self._label)  # raises when the voters all weigh 0
        labels = P_av.argmax(axis=2)  # (n_available, n_events)
        votes = np.zeros(P_av.shape[1:])
        rows = np.arange(P_av.shape[1])
        for w_i, labels_i in zip(w, labels, strict=True):  # per model, in order, like bincount
            votes[rows, labels_i] += w_i
        out: FloatArray = votes / w.sum()
        return out

    def explain(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> Explanation:
        """Model ``i`` contributes its vote share ``w_i / sum(w)`` to the class it picked."""
        P_arr, mask = self._combine_inputs(P, available, "explain")
        available_outputs(P_arr, mask)
        safe = np.where(np.isfinite(P_arr), P_arr, 0.0)
        votes = np.zeros_like(safe)
        np.put_along_axis(votes, safe.argmax(axis=2)[..., None], 1.0, axis=2)
        terms = linear_terms(self._available_shares(mask), votes, mask)
        return Explanation(terms, np.zeros(P_arr.shape[1:]))
