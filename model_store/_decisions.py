"""Decisions: which strategy a group of workers serves, versioned like every artifact.

Layout (``root/_decisions/<name>/``, a :class:`~._records.RecordLog`)::

    1/ 2/ ...       manifest.json + decision.json (checksummed, signed with the store's key)
    active.json     the decision in force, with the promotion history

A decision is a small JSON object the store checks only for shape: ``{"strategy": str, ...}``
(the worker writes the action, the strategy it replaces, the figures and who decided; those
fields, when present, must have their types: ``previous`` str or null, ``action`` and ``by``
str, ``held`` a list of str, ``figures`` an object or null). Every
decision is published with compare-and-set (:class:`~model_store.errors.ConflictError` when
another writer promoted one first), so concurrent deciders cannot overwrite each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._records import RecordLog

__all__ = ["DECISIONS_DIR", "DecisionLog", "StoredDecision"]

DECISIONS_DIR = "_decisions"
_RECORD_FILE = "decision.json"
_KIND = "decision"
# What readers of a decision use besides "strategy" (the worker, ``store strategy``): a field of
# another type is the store's refusal, not a TypeError three frames into a reader.
_FIELDS: tuple[tuple[str, type | tuple[type, ...], str], ...] = (
    ("previous", (str, type(None)), "is not a str"),
    ("action", str, "is not a str"),
    ("by", str, "is not a str"),
    ("held", list, "is not a list"),
    ("figures", (dict, type(None)), "is not an object"),
)


@dataclass(frozen=True)
class StoredDecision:
    """One verified decision: ``record["strategy"]`` is the strategy to serve."""

    name: str
    version: int
    record: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)
    signed: bool = False

    @property
    def strategy(self) -> str:
        return str(self.record["strategy"])


class DecisionLog(RecordLog[StoredDecision]):
    kind, directory, record_file = _KIND, DECISIONS_DIR, _RECORD_FILE
    stored = StoredDecision

    def check(self, record: object) -> str | None:
        if not (isinstance(record, dict) and isinstance(record.get("strategy"), str)):
            return "not an object with a 'strategy'"
        for key, types, what in _FIELDS:
            if key in record and not isinstance(record[key], types):
                return f"{key!r} {what}"
        if not all(isinstance(h, str) for h in record.get("held", [])):
            return "'held' lists a non-str"
        return None

    def check_new(self, record: Mapping[str, Any]) -> str | None:
        if not isinstance(record.get("strategy"), str):
            return "a decision needs a 'strategy' (str)"
        return None
