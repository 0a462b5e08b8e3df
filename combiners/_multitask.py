"""``multitask``: one small network, shared trunk, a head per task, trained on all tasks at once."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from combiners._base import BaseCombiner
from combiners._explain import l1_shares
from combiners._registry import register
from combiners._tasks import TaskSpec, check_task_specs, check_task_targets, default_tasks
from combiners._validation import (
    FloatArray,
    Task,
    available_outputs,
    check_features,
    check_finite,
    check_outputs,
    check_task,
    fill_missing,
    infer_task,
)
from combiners.errors import InvalidParameterError, ShapeError

__all__ = ["MultiTask"]


@register("multitask")
class MultiTask(BaseCombiner):
    """Multi-task fusion: a shared trunk over every model's outputs, one linear head per task.

    ``P``'s last axis is the concatenation of the tasks' blocks, in ``tasks`` order
    (``n_outputs`` columns each: class probabilities, or one value for a regression task);
    ``y`` has shape ``(n_events, n_tasks)`` (class index or value). The network
    ``heads(relu(trunk(z)))`` takes ``z`` = every model's row (standardised; plus the features
    ``X`` if ``use_features``) and is trained full-batch with Adam on the sum of the task
    losses (cross-entropy, MSE on standardised targets) plus L2 (``weight_decay``): the trunk
    is shared, so related tasks regularise each other. Training runs in torch (float64, CPU,
    a local generator seeded with ``random_state``; global torch state is left alone);
    ``combine`` is a numpy forward pass. The heads are stored as one matrix whose row blocks
    are the tasks' heads.

    ``combine`` returns ``(n_events, sum n_outputs)`` in the same layout: softmax probabilities
    per classification block, values (back in ``y``'s units) per regression block.
    Unavailable models' rows are replaced by the mean of the available models' outputs.

    Parameters
    ----------
    tasks : list of dict, optional
        ``{"name": str, "type": "classification" | "regression", "n_outputs": int}`` each
        (regression tasks have ``n_outputs`` 1). Default: one task of type ``task`` (or
        inferred) over all outputs; regression with several outputs gives one task per output.
    hidden : int, default 32
    epochs : int, default 200
    lr : float, default 0.01
    weight_decay : float, default 1e-4
    use_features : bool, default False
        Feed ``X`` ``(n_events, n_features)`` to the trunk too (then required in ``combine``).
    random_state : int, default 0
    task : {"classification", "regression"}, optional
        Only used when ``tasks`` is None.

    Attributes
    ----------
    tasks_ : list of dict
    trunk_weight_ : ndarray of shape (hidden, n_inputs)
    trunk_bias_ : ndarray of shape (hidden,)
    heads_weight_ : ndarray of shape (sum n_outputs, hidden)
    heads_bias_ : ndarray of shape (sum n_outputs,)

    Examples
    --------
    >>> import numpy as np
    >>> from combiners import get_combiner
    >>> rng = np.random.default_rng(0)
    >>> y = np.column_stack([rng.integers(0, 2, 80), rng.normal(size=80)])
    >>> probs = np.where(y[:, :1] == 1, [0.3, 0.7], [0.6, 0.4])  # a weak classifier
    >>> P = np.stack([np.hstack([probs, y[:, 1:] + d]) for d in (0.3, -0.3)])
    >>> tasks = [{"name": "label", "type": "classification", "n_outputs": 2},
    ...          {"name": "score", "type": "regression", "n_outputs": 1}]
    >>> comb = get_combiner("multitask", tasks=tasks, epochs=150).fit(P, y)
    >>> out = comb.combine(P)
    >>> out.shape, bool(np.allclose(out[:, :2].sum(axis=1), 1.0))
    ((80, 3), True)
    >>> float(np.mean(out[:, :2].argmax(axis=1) == y[:, 0]))
    1.0
    """

    _scalar_state = (*BaseCombiner._scalar_state, "tasks_", "n_features_in_")
    _array_state = (
        "in_mean_",
        "in_scale_",
        "y_mean_",
        "y_scale_",
        "trunk_weight_",
        "trunk_bias_",
        "heads_weight_",
        "heads_bias_",
    )

    def __init__(
        self,
        *,
        tasks: list[dict[str, Any]] | None = None,
        hidden: int = 32,
        epochs: int = 200,
        lr: float = 0.01,
        weight_decay: float = 1e-4,
        use_features: bool = False,
        random_state: int = 0,
        task: Task | None = None,
    ) -> None:
        self.tasks = tasks
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.use_features = use_features
        self.random_state = random_state
        self.task = task

    def validate_params(self) -> None:
        check_task(self.task, self._label)
        if self.tasks is not None:
            check_task_specs(self.tasks, self._label)
        for name in ("hidden", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidParameterError(self._label, name, "an integer >= 1", value)
        if not isinstance(self.random_state, int) or isinstance(self.random_state, bool):
            raise InvalidParameterError(
                self._label, "random_state", "an integer", self.random_state
            )
        if not (isinstance(self.lr, int | float) and np.isfinite(self.lr) and self.lr > 0):
            raise InvalidParameterError(self._label, "lr", "a finite number > 0", self.lr)
        wd = self.weight_decay
        if not (isinstance(wd, int | float) and np.isfinite(wd) and wd >= 0):
            raise InvalidParameterError(self._label, "weight_decay", "a finite number >= 0", wd)
        if not isinstance(self.use_features, bool):
            raise InvalidParameterError(
                self._label, "use_features", "True or False", self.use_features
            )

    def fit(self, P: ArrayLike, y: ArrayLike, X: ArrayLike | None = None) -> MultiTask:
        """Train on held-out ``P`` ``(n_models, n_events, sum n_outputs)``, ``y``; return self."""
        self.validate_params()
        P_arr = check_outputs(P)
        check_finite(P_arr, "P")
        n_models, n_events, n_outputs = P_arr.shape
        if n_events == 0:
            raise ShapeError("P", "at least one event to train on", "0 events")
        if self.tasks is None:
            specs = default_tasks(self.task or infer_task(P_arr, y), n_outputs)
        else:
            specs = check_task_specs(self.tasks, self._label)
        width = sum(t["n_outputs"] for t in specs)
        if width != n_outputs:
            raise ShapeError("P", f"{width} outputs along axis 2 (the tasks' blocks)", n_outputs)
        targets = check_task_targets(y, specs, n_events, self._label)
        self.n_models_, self.n_outputs_, self.tasks_ = n_models, n_outputs, specs
        types = {t["type"] for t in specs}
        self.task_ = "classification" if types == {"classification"} else "regression"
        self.n_features_in_ = None
        if self.use_features:
            self.n_features_in_ = check_features(X, n_events, None).shape[1]
        Z = self._inputs(P_arr, X)
        self.in_mean_ = Z.mean(axis=0)
        scale = Z.std(axis=0)
        self.in_scale_ = np.where(scale > 1e-12, scale, 1.0)
        regression = np.array([t["type"] == "regression" for t in specs])
        y_mean = np.where(regression, targets.mean(axis=0), 0.0)
        y_std = np.where(regression, targets.std(axis=0), 1.0)
        self.y_mean_, self.y_scale_ = y_mean, np.where(y_std > 1e-12, y_std, 1.0)
        from combiners._torch_train import train_network  # torch loads only when training

        params = train_network(
            (Z - self.in_mean_) / self.in_scale_,
            (targets - self.y_mean_) / self.y_scale_,
            specs,
            hidden=self.hidden,
            epochs=self.epochs,
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            seed=self.random_state,
        )
        self.trunk_weight_, self.trunk_bias_, self.heads_weight_, self.heads_bias_ = params
        return self

    def _inputs(self, P: FloatArray, X: ArrayLike | None) -> FloatArray:
        Z = P.transpose(1, 0, 2).reshape(P.shape[1], P.shape[0] * P.shape[2])
        if self.use_features:
            Z = np.hstack([Z, check_features(X, P.shape[1], self.n_features_in_)])
        return Z

    def combine(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> FloatArray:
        """Return ``(n_events, sum n_outputs)``: probabilities / values per task block."""
        P_arr, mask = self._combine_inputs(P, available)
        available_outputs(P_arr, mask)
        Z = (self._inputs(fill_missing(P_arr, mask), X) - self.in_mean_) / self.in_scale_
        hidden = np.maximum(Z @ self.trunk_weight_.T + self.trunk_bias_, 0.0)
        raw = hidden @ self.heads_weight_.T + self.heads_bias_
        out: FloatArray = np.empty_like(raw)
        start = 0
        specs: list[TaskSpec] = self.tasks_
        for j, spec in enumerate(specs):  # per task block, not per event
            block = slice(start, start + spec["n_outputs"])
            if spec["type"] == "classification":
                logits = raw[:, block] - raw[:, block].max(axis=1, keepdims=True)
                exp = np.exp(logits)
                out[:, block] = exp / exp.sum(axis=1, keepdims=True)
            else:
                out[:, block] = raw[:, block] * self.y_scale_[j] + self.y_mean_[j]
            start = block.stop
        return out

    def model_weights(self) -> FloatArray:
        """Each model's share of the trunk's absolute input weights (inputs standardised, so
        comparable), ``(n_models,)`` summing to 1; no per-event split (the trunk is not linear)."""
        self._check_fitted("model_weights")
        return l1_shares(self.trunk_weight_, self.n_models_, self.n_outputs_)
