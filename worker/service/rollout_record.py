"""A rollout's record, as stored (:mod:`model_store._rollouts`), and its moves.

Pure functions over the record dict, shared by the workers (:mod:`worker.service.rollout`) and
``streamfuse rollout`` (:mod:`worker.tools.rollout`); each move returns a new record with one
more ``history`` entry, which the caller publishes compare-and-set::

    running --advance--> running (next step) ... --advance at the last step--> done
    running --rollback--> rolled_back       (share 0; the gates' figures recorded)
    running --pause--> paused --resume--> running (the step's clock starts again)
    running | paused --abort--> aborted     (share 0)

``step_started_at`` (epoch seconds) is when the step in force began, the same for every worker
of the group, so ``min_duration_s`` is counted once for all of them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from worker.accuracy.gates import Gates

__all__ = ["ACTIONS", "MoveError", "moved", "new_record", "reaches_last", "share_of"]

ACTIONS = ("advance", "rollback", "pause", "resume", "abort")
_FROM = {
    "advance": ("running",),
    "rollback": ("running", "paused"),
    "pause": ("running",),
    "resume": ("paused",),
    "abort": ("running", "paused"),
}


class MoveError(ValueError):
    """A move the rollout's status does not allow (``resume`` of a running rollout...)."""

    def __init__(self, action: str, status: str) -> None:
        super().__init__(f"cannot {action} a rollout that is {status}")


def new_record(
    candidate: dict[str, Any], steps: Sequence[float], gates: Gates, by: str, now: float
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "candidate": dict(candidate),
        "steps": list(steps),
        "step": 0,
        "status": "running",
        "gates": gates.to_record(),
        "step_started_at": now,
        "history": [],
    }
    _log(record, "start", by, now, "", None)
    return record


def share_of(record: dict[str, Any]) -> float:
    """Percent of keys the candidate serves: the step's while running or paused, 100 once
    done (until the candidate is what the champion serves), else 0."""
    status = record["status"]
    if status in ("running", "paused"):
        return float(record["steps"][record["step"]])
    return 100.0 if status == "done" else 0.0


def moved(
    record: dict[str, Any],
    action: str,
    by: str,
    now: float,
    why: str = "",
    figures: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record after ``action``; :class:`MoveError` when its status does not allow it."""
    if action not in _FROM:
        raise ValueError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    if record["status"] not in _FROM[action]:
        raise MoveError(action, record["status"])
    new = copy.deepcopy(record)
    if action == "advance":
        if new["step"] + 1 < len(new["steps"]):
            new["step"] += 1
        else:
            new["status"] = "done"
        new["step_started_at"] = now
    elif action == "rollback":
        new["status"] = "rolled_back"
    elif action == "pause":
        new["status"] = "paused"
    elif action == "resume":
        new["status"] = "running"
        new["step_started_at"] = now
    else:
        new["status"] = "aborted"
    _log(new, "done" if new["status"] == "done" else action, by, now, why, figures)
    return new


def reaches_last(record: dict[str, Any]) -> bool:
    """Whether advancing from the step in force reaches the last step or finishes."""
    return record["step"] + 2 >= len(record["steps"])


def _log(
    record: dict[str, Any],
    action: str,
    by: str,
    now: float,
    why: str,
    figures: dict[str, Any] | None,
) -> None:
    entry: dict[str, Any] = {
        "action": action,
        "step": record["step"],
        "share": share_of(record),
        "at": round(now, 3),
        "by": by,
    }
    if why:
        entry["why"] = why
    if figures is not None:
        entry["figures"] = figures
    record["history"].append(entry)
