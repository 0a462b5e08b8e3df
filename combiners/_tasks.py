"""Task specifications for ``multitask``: ``{"name", "type", "n_outputs"}`` and their targets."""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike

from combiners._validation import TASKS, FloatArray, Task, check_finite
from combiners.errors import InvalidParameterError, ShapeError, TargetError

__all__ = ["TaskSpec", "check_task_specs", "check_task_targets", "default_tasks"]


class TaskSpec(TypedDict):
    """One task: its block of ``n_outputs`` columns in ``P`` and one column of ``y``."""

    name: str
    type: Task
    n_outputs: int


def check_task_specs(tasks: Any, combiner: str) -> list[TaskSpec]:
    """Validate the ``tasks`` parameter and return clean copies."""
    expected = (
        'a non-empty list of {"name": str, "type": "classification"|"regression", "n_outputs": int}'
    )
    if not isinstance(tasks, list | tuple) or not tasks:
        raise InvalidParameterError(combiner, "tasks", expected, tasks)
    specs: list[TaskSpec] = []
    for spec in tasks:
        if not isinstance(spec, dict) or set(spec) != {"name", "type", "n_outputs"}:
            raise InvalidParameterError(combiner, "tasks", expected, spec)
        name, kind, n_outputs = spec["name"], spec["type"], spec["n_outputs"]
        ok_n = isinstance(n_outputs, int) and not isinstance(n_outputs, bool) and n_outputs >= 1
        if not isinstance(name, str) or not name or kind not in TASKS or not ok_n:
            raise InvalidParameterError(combiner, "tasks", expected, spec)
        if kind == "regression" and n_outputs != 1:
            raise InvalidParameterError(
                combiner, "tasks", "regression tasks with n_outputs 1", spec
            )
        specs.append({"name": name, "type": kind, "n_outputs": n_outputs})
    names = [s["name"] for s in specs]
    if len(set(names)) != len(names):
        raise InvalidParameterError(combiner, "tasks", "unique task names", names)
    return specs


def default_tasks(task: Task, n_outputs: int) -> list[TaskSpec]:
    """One classification task over all outputs, or one regression task per output."""
    if task == "classification":
        return [{"name": "default", "type": "classification", "n_outputs": n_outputs}]
    return [{"name": f"output_{j}", "type": "regression", "n_outputs": 1} for j in range(n_outputs)]


def check_task_targets(
    y: ArrayLike, specs: list[TaskSpec], n_events: int, combiner: str
) -> FloatArray:
    """Return ``y`` as float64 ``(n_events, n_tasks)``: class indices or values per column."""
    y_arr = np.asarray(y, dtype=np.float64)
    if y_arr.ndim == 1 and len(specs) == 1:
        y_arr = y_arr[:, None]
    if y_arr.shape != (n_events, len(specs)):
        raise ShapeError(
            "y", f"shape ({n_events}, {len(specs)}): one column per task", f"shape {y_arr.shape}"
        )
    check_finite(y_arr, "y")
    for j, spec in enumerate(specs):
        if spec["type"] != "classification":
            continue
        col = y_arr[:, j]
        bad = (col != np.round(col)) | (col < 0) | (col >= spec["n_outputs"])
        if bad.any():
            raise TargetError(
                combiner,
                f"class indices 0..{spec['n_outputs'] - 1} for task {spec['name']!r}",
                col[bad][:5],
            )
    return y_arr
