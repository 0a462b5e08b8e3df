"""Rollouts: a candidate served to a growing, key-sticky share of events, versioned like
every artifact.

Layout (``root/_rollouts/<name>/``, a :class:`~._records.RecordLog`)::

    1/ 2/ ...       manifest.json + rollout.json (checksummed, signed with the store's key)
    active.json     the rollout state in force, with the history of its versions

Every change of state (started, advanced, paused, resumed, rolled back, aborted, done) is a new
version published *compare-and-set* against the version its writer read
(:class:`~model_store.errors.ConflictError` when another writer was first), so two workers
never advance a rollout twice, and a record altered without the key fails its signature.

A record is checked for shape on publish and on load (:func:`check_record`)::

    {"candidate": {"model": str, "version": int} and/or {"strategy": str},
     "steps": [1, 5, 25, 50, 100],        percent of keys, increasing, in (0, 100]
     "step": 0,                           index into steps
     "status": "running" | "paused" | "rolled_back" | "aborted" | "done",
     "gates": {...}, "history": [{...}, ...], ...}

Everything else (the gates' keys, each history entry's figures) is the worker's.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._records import RecordLog

__all__ = ["ROLLOUTS_DIR", "STATUSES", "RolloutLog", "StoredRollout", "check_record"]

ROLLOUTS_DIR = "_rollouts"
STATUSES = ("running", "paused", "rolled_back", "aborted", "done")
_RECORD_FILE = "rollout.json"
_KIND = "rollout"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_record(record: object) -> str | None:
    """Why ``record`` is not a rollout record, or None."""
    if not isinstance(record, dict):
        return "not an object"
    candidate = record.get("candidate")
    if not isinstance(candidate, dict):
        return "'candidate' is not an object"
    model, version, strategy = (candidate.get(k) for k in ("model", "version", "strategy"))
    if model is None and strategy is None:
        return "'candidate' names neither a model nor a strategy"
    if model is not None and not (
        isinstance(model, str) and isinstance(version, int) and not isinstance(version, bool)
    ):
        return "'candidate' needs a 'model' (str) with its 'version' (int)"
    if strategy is not None and not isinstance(strategy, str):
        return "'candidate' 'strategy' is not a str"
    steps = record.get("steps")
    if not (isinstance(steps, list) and steps and all(_number(s) for s in steps)):
        return "'steps' is not a non-empty list of numbers"
    if any(not 0 < s <= 100 for s in steps) or any(a >= b for a, b in itertools.pairwise(steps)):
        return "'steps' are not increasing percentages in (0, 100]"
    step = record.get("step")
    if not (isinstance(step, int) and not isinstance(step, bool) and 0 <= step < len(steps)):
        return "'step' is not an index into 'steps'"
    if record.get("status") not in STATUSES:
        return f"'status' is not one of {', '.join(STATUSES)}"
    if not isinstance(record.get("gates"), dict):
        return "'gates' is not an object"
    history = record.get("history")
    if not (isinstance(history, list) and all(isinstance(h, dict) for h in history)):
        return "'history' is not a list of objects"
    return None


@dataclass(frozen=True)
class StoredRollout:
    """One verified rollout state."""

    name: str
    version: int
    record: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)
    signed: bool = False


class RolloutLog(RecordLog[StoredRollout]):
    kind, directory, record_file = _KIND, ROLLOUTS_DIR, _RECORD_FILE
    stored = StoredRollout

    def check(self, record: object) -> str | None:
        return check_record(record)

    def check_new(self, record: Mapping[str, Any]) -> str | None:
        problem = check_record(dict(record))
        return None if problem is None else f"not a rollout record: {problem}"
