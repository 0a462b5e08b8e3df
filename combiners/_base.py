"""The combiner base class: scikit-learn estimator conventions over ``P`` arrays."""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from combiners._explain import Explanation
from combiners._validation import (
    TASKS,
    BoolArray,
    FloatArray,
    IntArray,
    Task,
    check_available,
    check_finite,
    check_outputs,
    check_targets,
    check_task,
    infer_task,
)
from combiners.errors import (
    ModelCountError,
    NotFittedError,
    ShapeError,
    StateError,
    TargetError,
)

__all__ = ["BaseCombiner"]


class BaseCombiner:
    """Base of every strategy.

    ``__init__`` only stores keyword parameters; ``fit(P, y, X=None)`` validates, sets fitted
    attributes (trailing underscore) and returns ``self``; ``combine(P, X=None, available=None)``
    maps ``P`` of shape ``(n_models, n_events, n_outputs)`` to ``(n_events, n_outputs)``.
    Online strategies (``online = True``) add ``partial_fit(P, y, X=None, available=None)``.

    Subclasses list the fitted attributes that make up their state in ``_scalar_state``
    (JSON-serialisable) and ``_array_state`` (numpy arrays), which is all
    :func:`combiners.save_state` needs.
    """

    #: Registered name, set by :func:`combiners.register`.
    name: ClassVar[str] = ""
    supported_tasks: ClassVar[tuple[Task, ...]] = TASKS
    online: ClassVar[bool] = False
    _scalar_state: ClassVar[tuple[str, ...]] = ("n_models_", "n_outputs_", "task_")
    _array_state: ClassVar[tuple[str, ...]] = ()

    n_models_: int
    n_outputs_: int
    task_: Task

    def __init__(self, *, task: Task | None = None) -> None:
        self.task = task

    # -- parameters -------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the keyword parameters taken by ``__init__``."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, as given."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def _label(self) -> str:
        return type(self).__name__

    def validate_params(self) -> None:
        """Check the parameters that do not depend on data; raise a CombinerError if bad.

        Called by ``fit`` and by :func:`combiners.get_combiner`, so a bad config fails at start-up.
        """
        check_task(self.task, self._label, self.supported_tasks)

    # -- fitting ----------------------------------------------------------------------------
    def _fit_inputs(self, P: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray | IntArray]:
        """Validate parameters, ``P`` and ``y``; set ``n_models_``, ``n_outputs_``, ``task_``."""
        self.validate_params()
        P_arr = check_outputs(P)
        check_finite(P_arr, "P")
        task = check_task(self.task, self._label, self.supported_tasks) or infer_task(P_arr, y)
        if task not in self.supported_tasks:
            raise TargetError(
                self._label,
                "class indices, with P rows summing to 1 (this strategy is classification-only)",
                f"{task} data (pass task=... to be explicit)",
            )
        y_arr = check_targets(y, task, P_arr.shape[1], P_arr.shape[2], self._label)
        self.n_models_, self.n_outputs_, self.task_ = P_arr.shape[0], P_arr.shape[2], task
        return P_arr, y_arr

    def fit(self, P: ArrayLike, y: ArrayLike, X: ArrayLike | None = None) -> BaseCombiner:
        """Fit on held-out base-model outputs ``P`` and targets ``y``; return ``self``."""
        raise NotImplementedError

    def combine(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> FloatArray:
        """Fuse ``P`` ``(n_models, n_events, n_outputs)`` into ``(n_events, n_outputs)``."""
        raise NotImplementedError

    # -- using ------------------------------------------------------------------------------
    def is_fitted(self) -> bool:
        """True once ``fit`` (or ``load_state``) has run."""
        return hasattr(self, "n_models_")

    def _check_fitted(self, method: str = "combine") -> None:
        if not self.is_fitted():
            raise NotFittedError(self._label, method)

    def _combine_inputs(
        self, P: ArrayLike, available: ArrayLike | None, method: str = "combine"
    ) -> tuple[FloatArray, BoolArray | None]:
        """Check fitted, shape against fit, and the mask; finiteness is left to the caller."""
        self._check_fitted(method)
        P_arr = check_outputs(P)
        if P_arr.shape[0] != self.n_models_:
            raise ModelCountError(self.n_models_, P_arr.shape[0])
        if P_arr.shape[2] != self.n_outputs_:
            raise ShapeError(
                "P", f"{self.n_outputs_} outputs (as in fit) along axis 2", P_arr.shape[2]
            )
        return P_arr, check_available(available, self.n_models_, self._label)

    # -- explaining -------------------------------------------------------------------------
    def model_weights(self) -> FloatArray | None:
        """Each model's current weight, shape ``(n_models,)``; None when the strategy has none."""
        self._check_fitted("model_weights")
        return None

    def explain(
        self, P: ArrayLike, X: ArrayLike | None = None, available: ArrayLike | None = None
    ) -> Explanation | None:
        """Each model's contribution to ``combine(P, X, available)``; None when the strategy
        cannot split its output that way (see :class:`combiners.Explanation`)."""
        self._check_fitted("explain")
        return None

    # -- state ------------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Fitted scalars (JSON types) and arrays; see :func:`combiners.save_state`."""
        self._check_fitted("save_state")
        scalars = {k: _to_json(getattr(self, k)) for k in self._scalar_state}
        arrays = {k: np.array(getattr(self, k), order="C") for k in self._array_state}  # copies
        return scalars, arrays

    def _set_state(self, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        missing = [k for k in self._scalar_state if k not in scalars]
        missing += [k for k in self._array_state if k not in arrays]
        if missing:
            raise StateError(self._label, f"state lacks {', '.join(missing)}")
        for k in self._scalar_state:
            setattr(self, k, scalars[k])
        for k in self._array_state:
            setattr(self, k, np.array(arrays[k]))


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
