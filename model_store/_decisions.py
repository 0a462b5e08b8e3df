"""Decisions: which strategy a group of workers serves, versioned like every artifact.

Layout (``root/_decisions/<name>/``, the same :class:`VersionedDir` as models)::

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

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._json import parse_json
from ._manifest import ReadContext, read_manifest, read_verified_files
from ._refused import Refused
from ._versions import VersionedDir, check_name
from .errors import IntegrityError, ModelNotFoundError, PublishError

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


class DecisionLog:
    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx
        self.dirs = VersionedDir(ctx, (DECISIONS_DIR,), _KIND)

    def publish(self, name: str, record: Mapping[str, Any], expected: int | None) -> int:
        """Publish and promote ``record`` if decision ``expected`` (None: none yet) is still
        the active one; else :class:`ConflictError`."""
        check_name(name, kind=_KIND)
        if not isinstance(record.get("strategy"), str):
            raise PublishError(name, "a decision needs a 'strategy' (str)")
        try:
            data = json.dumps(dict(record), indent=1, sort_keys=True).encode()
        except (TypeError, ValueError) as exc:
            raise PublishError(name, f"decision is not JSON-serialisable: {exc}") from exc
        return self.dirs.publish(
            name, {_RECORD_FILE: data}, {}, promote=True, expected_active=expected
        )

    def active_version(self, name: str) -> int | None:
        """The decision in force (one small pointer read), None when none was made."""
        pointer = self.dirs.read_pointer(check_name(name, kind=_KIND))
        return None if pointer is None else int(pointer["version"])

    def load(self, name: str, version: int) -> StoredDecision:
        version = self.dirs.resolve(name, version)
        parts = self.dirs.parts(name, version)
        manifest, signed = read_manifest(self.ctx, parts, name, version, kind=_KIND)
        contents = read_verified_files(
            self.ctx,
            parts,
            manifest,
            kind=_KIND,
            caps={_RECORD_FILE: self.ctx.limits.max_json_bytes},
        )
        if _RECORD_FILE not in contents:
            raise IntegrityError(name, version, _RECORD_FILE, "missing", kind=_KIND)
        try:
            record = parse_json(
                contents[_RECORD_FILE],
                max_bytes=self.ctx.limits.max_json_bytes,
                max_depth=self.ctx.limits.max_json_depth,
            )
        except Refused as exc:
            raise IntegrityError(name, version, _RECORD_FILE, str(exc), kind=_KIND) from exc
        if not (isinstance(record, dict) and isinstance(record.get("strategy"), str)):
            raise IntegrityError(
                name, version, _RECORD_FILE, "not an object with a 'strategy'", kind=_KIND
            )
        for key, types, what in _FIELDS:
            if key in record and not isinstance(record[key], types):
                raise IntegrityError(name, version, _RECORD_FILE, f"{key!r} {what}", kind=_KIND)
        held = record.get("held", [])
        if not all(isinstance(h, str) for h in held):
            raise IntegrityError(name, version, _RECORD_FILE, "'held' lists a non-str", kind=_KIND)
        return StoredDecision(name, version, record, manifest, signed)

    def active(self, name: str) -> StoredDecision | None:
        version = self.active_version(name)
        return None if version is None else self.load(name, version)

    def history(self, name: str) -> list[StoredDecision]:
        """Every decision of ``name``, oldest first."""
        versions = self.dirs.versions(check_name(name, kind=_KIND))
        if not versions:
            raise ModelNotFoundError(name, None, kind=_KIND)
        return [self.load(name, v) for v in versions]
