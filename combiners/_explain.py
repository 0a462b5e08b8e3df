"""Why the ensemble decided what it did: per-model weights and per-model contributions.

Every built-in strategy answers ``model_weights()`` with one weight per model (what it holds
now: fixed weights as fitted, Hedge's and select_best's as they move), and the linear ones and
stacking answer ``explain(P, available=None)`` with an :class:`Explanation`: each model's
contribution to each event's output and the part no model owns (a bias, an intercept, the
correction of clipping). Computed for a whole batch as arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from combiners._validation import BoolArray, FloatArray

__all__ = ["Explanation", "l1_shares", "linear_terms", "softmax"]


@dataclass(frozen=True)
class Explanation:
    """Per-model contributions to a batch's combined output.

    Attributes
    ----------
    contributions : ndarray of shape (n_models, n_events, n_outputs)
        Model ``i``'s part of each output (0 for a model unavailable in the batch).
    base : ndarray of shape (n_events, n_outputs)
        What belongs to no model: a bias or intercept, or what clipping changed.
    link : {"identity", "softmax"}
        ``identity``: ``contributions.sum(axis=0) + base`` is the combined output;
        ``softmax`` (stacking's logistic meta-learner): the terms are logits and the output
        is their softmax over the classes (a class the meta-learner never saw has a base of
        ``-inf``: probability 0).
    """

    contributions: FloatArray
    base: FloatArray
    link: Literal["identity", "softmax"] = "identity"

    def total(self) -> FloatArray:
        """The combined output the terms add up to, ``(n_events, n_outputs)``."""
        summed: FloatArray = self.contributions.sum(axis=0) + self.base
        return softmax(summed) if self.link == "softmax" else summed


def linear_terms(w: FloatArray, P: FloatArray, mask: BoolArray | None) -> FloatArray:
    """``w_i * P_i`` for every model, 0 for the unavailable ones (their rows may be NaN).

    ``w`` has shape (n_models,) and already holds 0 (or anything) for unavailable models.
    """
    terms: FloatArray = w[:, None, None] * np.where(np.isfinite(P), P, 0.0)
    if mask is not None:
        terms[~mask] = 0.0
    return terms


def l1_shares(coef: FloatArray, n_models: int, n_outputs: int) -> FloatArray:
    """Each model's share of the absolute weight a linear layer puts on its input columns.

    ``coef`` has shape (n_rows, n_columns) whose first ``n_models * n_outputs`` columns are the
    models' outputs, model by model (stacking's meta-learner, multitask's trunk); extra columns
    (raw features) are left out. Shares sum to 1 (equal when every weight is 0).
    """
    block = np.abs(coef[:, : n_models * n_outputs]).reshape(coef.shape[0], n_models, n_outputs)
    per_model = block.sum(axis=(0, 2))
    total = per_model.sum()
    if not total > 0:
        return np.full(n_models, 1.0 / n_models)
    shares: FloatArray = per_model / total
    return shares


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax; ``-inf`` logits get probability 0."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return out
