"""Small signed JSON records published compare-and-set: the store's decisions and rollouts.

Each kind lives in ``root/<directory>/<name>/`` (the same :class:`VersionedDir` as models):
versions ``1/ 2/ ...`` hold ``manifest.json`` and the record's file (checksummed, signed with
the store's key), and ``active.json`` points at the record in force. Every record is published
with compare-and-set against the version its writer read
(:class:`~model_store.errors.ConflictError` when another writer was first), so concurrent
writers cannot overwrite each other, and a record altered without the key fails its signature.
A subclass names its kind and file and says why a record is not one of its kind
(:meth:`RecordLog.check`); a reader gets the verified record or the store's refusal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._json import parse_json
from ._manifest import ReadContext, read_manifest, read_verified_files
from ._refused import Refused
from ._versions import VersionedDir, check_name
from .errors import IntegrityError, ModelNotFoundError, PublishError

__all__ = ["RecordLog"]


class RecordLog:
    """The versions of the records of one kind, by name."""

    kind: str  # "decision", "rollout": the word the store's errors use
    directory: str  # below the store's root
    record_file: str  # in each version

    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx
        self.dirs = VersionedDir(ctx, (self.directory,), self.kind)

    def check(self, record: object) -> str | None:
        """Why ``record`` is not a record of this kind (read from the store), or None."""
        raise NotImplementedError

    def check_new(self, record: Mapping[str, Any]) -> str | None:
        """Why ``record`` may not be published, or None (by default :meth:`check`)."""
        return self.check(dict(record))

    def publish_record(self, name: str, record: Mapping[str, Any], expected: int | None) -> int:
        """Publish and promote ``record`` if version ``expected`` (None: none yet) is still
        the active one; else :class:`ConflictError`."""
        check_name(name, kind=self.kind)
        problem = self.check_new(record)
        if problem is not None:
            raise PublishError(name, problem)
        try:
            data = json.dumps(dict(record), indent=1, sort_keys=True).encode()
        except (TypeError, ValueError) as exc:
            raise PublishError(name, f"{self.kind} is not JSON-serialisable: {exc}") from exc
        return self.dirs.publish(
            name, {self.record_file: data}, {}, promote=True, expected_active=expected
        )

    def active_version(self, name: str) -> int | None:
        """The record in force (one small pointer read), None when there is none yet."""
        pointer = self.dirs.read_pointer(check_name(name, kind=self.kind))
        return None if pointer is None else int(pointer["version"])

    def versions_of(self, name: str) -> list[int]:
        """Every version of ``name``, oldest first."""
        versions = self.dirs.versions(check_name(name, kind=self.kind))
        if not versions:
            raise ModelNotFoundError(name, None, kind=self.kind)
        return list(versions)

    def read_record(
        self, name: str, version: int
    ) -> tuple[int, dict[str, Any], dict[str, Any], bool]:
        """The verified record: (version, record, manifest, signed)."""
        version = self.dirs.resolve(name, version)
        parts = self.dirs.parts(name, version)
        manifest, signed = read_manifest(self.ctx, parts, name, version, kind=self.kind)
        contents = read_verified_files(
            self.ctx,
            parts,
            manifest,
            kind=self.kind,
            caps={self.record_file: self.ctx.limits.max_json_bytes},
        )
        if self.record_file not in contents:
            raise IntegrityError(name, version, self.record_file, "missing", kind=self.kind)
        try:
            record = parse_json(
                contents[self.record_file],
                max_bytes=self.ctx.limits.max_json_bytes,
                max_depth=self.ctx.limits.max_json_depth,
            )
        except Refused as exc:
            raise IntegrityError(name, version, self.record_file, str(exc), kind=self.kind) from exc
        problem = self.check(record)
        if problem is not None:
            raise IntegrityError(name, version, self.record_file, problem, kind=self.kind)
        return version, record, manifest, signed
