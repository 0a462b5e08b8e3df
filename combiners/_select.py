"""``select_best``: average the top-k models by a held-out, then rolling, metric."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from combiners._base import BaseCombiner
from combiners._explain import Explanation, linear_terms
from combiners._registry import register
from combiners._rolling import RollingMean
from combiners._validation import (
    FloatArray,
    IntArray,
    Task,
    available_outputs,
    check_available,
    check_outputs,
    check_targets,
)
from combiners.errors import InvalidParameterError, ModelCountError, ShapeError

__all__ = ["SelectBest"]

#: metric -> (tasks it applies to, higher is better)
METRICS: dict[str, tuple[tuple[Task, ...], bool]] = {
    "accuracy": (("classification",), True),
    "log_loss": (("classification",), False),
    "mae": (("classification", "regression"), False),
    "rmse": (("classification", "regression"), False),
}
LOG_LOSS_EPS = 1e-15


@register("select_best")
class SelectBest(BaseCombiner):
    """Mean of the ``k`` best models, ranked by a metric; re-ranked online from labels.

    ``fit`` ranks the models by ``metric`` over all the held-out data and seeds the rolling
    window with its last ``window`` events. ``partial_fit`` pushes each labelled batch into the
    window (per-model ring buffers with running sums, updated and reverted like River's
    rolling metrics, vectorised over the batch) and re-ranks by the windowed metric. Models
    unavailable in a labelled batch are not scored for it. ``combine`` averages the first
    ``k`` available models in the ranking (fewer if fewer are available); ties in the metric
    go to the lower model index. ``mae``/``rmse`` on classification compare with one-hot
    targets.

    Parameters
    ----------
    k : int, default 1
        Number of models averaged (at most ``n_models``).
    metric : {"accuracy", "log_loss", "mae", "rmse"}, optional
        Default: accuracy for classification, mae for regression.
    window : int, default 1000
        Events in the rolling window.
    task : {"classification", "regression"}, optional

    Attributes
    ----------
    scores_ : ndarray of shape (n_models,)
        Current metric per model (NaN for a model not scored yet).
    ranking_ : ndarray of shape (n_models,)
        Model indices, best first.
    selected_ : ndarray of shape (k,)
        The first ``k`` of ``ranking_``.
    metric_ : str

    Examples
    --------
    >>> import numpy as np
    >>> from combiners import get_combiner
    >>> P = np.array([[[0.9, 0.1], [0.2, 0.8]], [[0.4, 0.6], [0.7, 0.3]]])
    >>> comb = get_combiner("select_best", k=1, window=2).fit(P, [0, 1])
    >>> comb.selected_, comb.scores_
    (array([0]), array([1., 0.]))
    >>> comb.combine(P, available=[False, True])  # the best is down: the next one
    array([[0.4, 0.6],
           [0.7, 0.3]])
    >>> comb.partial_fit(P, [1, 0]).selected_  # the window now favours model 1
    array([1])
    """

    online: ClassVar[bool] = True
    _scalar_state = (*BaseCombiner._scalar_state, "metric_", "pos_", "n_seen_")
    _array_state = ("scores_", "ranking_", "buffer_", "valid_", "sums_", "counts_")

    def __init__(
        self,
        *,
        k: int = 1,
        metric: str | None = None,
        window: int = 1000,
        task: Task | None = None,
    ) -> None:
        self.k = k
        self.metric = metric
        self.window = window
        self.task = task

    def validate_params(self) -> None:
        super().validate_params()
        for name in ("k", "window"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise InvalidParameterError(self._label, name, "an integer >= 1", value)
        if self.metric is not None and self.metric not in METRICS:
            raise InvalidParameterError(
                self._label, "metric", f"one of {sorted(METRICS)}", self.metric
            )

    @property
    def selected_(self) -> IntArray:
        return self.ranking_[: self.k]

    def fit(self, P: ArrayLike, y: ArrayLike, X: ArrayLike | None = None) -> SelectBest:
        """Rank models on held-out ``P`` ``(n_models, n_events, n_outputs)`` and ``y``."""
        P_arr, y_arr = self._fit_inputs(P, y)
        if self.k > self.n_models_:
            raise InvalidParameterError(self._label, "k", f"<= n_models ({self.n_models_})", self.k)
        metric = self.metric or ("accuracy" if self.task_ == "classification" else "mae")
        if self.task_ not in METRICS[metric][0]:
            raise InvalidParameterError(self._label, "metric", f"a {self.task_} metric", metric)
        self.metric_ = metric
        values = self._per_event(P_arr, y_arr)  # (n_models, n_events)
        full = RollingMean(values.shape[1] or 1, self.n_models_)
        full.push(values, None)
        self._rank(full.means())
        window = RollingMean(self.window, self.n_models_)
        window.push(values, None)
        self._store(window)
        return self

    def partial_fit(
        self,
        P: ArrayLike,
        y: ArrayLike,
        X: ArrayLike | None = None,
        available: ArrayLike | None = None,
    ) -> SelectBest:
        """Push a labelled batch into the rolling window and re-rank; return self."""
        self._check_fitted("partial_fit")
        P_arr = check_outputs(P)
        if P_arr.shape[0] != self.n_models_:
            raise ModelCountError(self.n_models_, P_arr.shape[0])
        if P_arr.shape[2] != self.n_outputs_:
            raise ShapeError("P", f"{self.n_outputs_} outputs (as in fit)", P_arr.shape[2])
        mask = check_available(available, self.n_models_, self._label)
        available_outputs(P_arr, mask)
        y_arr = check_targets(y, self.task_, P_arr.shape[1], self.n_outputs_, self._label)
        if mask is not None:  # scored on zeros, then discarded: keeps NaN out of the sums
            P_arr = np.where(mask[:, None, None], P_arr, 0.0)
        rolling = self._load()
        rolling.push(self._per_event(P_arr, y_arr), mask)
        self._store(rolling)
        self._rank(rolling.means())
        return self

    def combine(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> FloatArray:
        """Return ``(n_events, n_outputs)``: the mean of the top-k available models."""
        P_arr, mask = self._combine_inputs(P, available)
        available_outputs(P_arr, mask)
        out: FloatArray = P_arr[self._chosen(mask)].mean(axis=0)
        return out

    def model_weights(self) -> FloatArray:
        """``1/k`` for each selected model, 0 for the others, ``(n_models,)``."""
        self._check_fitted("model_weights")
        return self._shares(None)

    def explain(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> Explanation:
        """Each of the averaged models contributes ``P_i / k``; the others 0."""
        P_arr, mask = self._combine_inputs(P, available, "explain")
        available_outputs(P_arr, mask)
        return Explanation(linear_terms(self._shares(mask), P_arr, mask), np.zeros(P_arr.shape[1:]))

    # -- internals --------------------------------------------------------------------------
    def _chosen(self, mask: np.ndarray | None) -> IntArray:
        """The first ``k`` available models of the ranking."""
        order = self.ranking_ if mask is None else self.ranking_[mask[self.ranking_]]
        chosen: IntArray = order[: self.k]
        return chosen

    def _shares(self, mask: np.ndarray | None) -> FloatArray:
        chosen = self._chosen(mask)
        w = np.zeros(self.n_models_)
        w[chosen] = 1.0 / len(chosen)
        return w

    def _per_event(self, P: FloatArray, y: FloatArray | IntArray) -> FloatArray:
        """Per-model, per-event metric contributions, shape ``(n_models, n_events)``."""
        if self.task_ == "classification":
            if self.metric_ == "accuracy":
                hits: FloatArray = (P.argmax(axis=2) == y).astype(np.float64)
                return hits
            if self.metric_ == "log_loss":
                p_true = P[:, np.arange(P.shape[1]), y]
                return -np.log(np.clip(p_true, LOG_LOSS_EPS, 1.0))
            target = np.eye(self.n_outputs_)[y]
        else:
            target = y
        err = P - target
        per_event: FloatArray = (np.abs(err) if self.metric_ == "mae" else err * err).mean(axis=2)
        return per_event

    def _rank(self, means: FloatArray) -> None:
        scores = np.sqrt(means) if self.metric_ == "rmse" else means
        higher_better = METRICS[self.metric_][1]
        key = np.where(np.isnan(scores), np.inf, -scores if higher_better else scores)
        self.scores_ = scores
        self.ranking_ = np.argsort(key, kind="stable").astype(np.int64)

    def _store(self, rolling: RollingMean) -> None:
        self.buffer_, self.valid_ = rolling.values, rolling.valid
        self.sums_, self.counts_ = rolling.sums, rolling.counts
        self.pos_, self.n_seen_ = rolling.pos, rolling.n_seen

    def _load(self) -> RollingMean:
        rolling = RollingMean(self.window, self.n_models_)
        rolling.values, rolling.valid = self.buffer_, self.valid_.astype(bool)
        rolling.sums, rolling.counts = self.sums_, self.counts_
        rolling.pos, rolling.n_seen = int(self.pos_), int(self.n_seen_)
        return rolling
