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
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from ._artifacts import ArtifactKind, Found
from ._manifest import ReadContext
from ._versions import check_name
from .errors import ModelNotFoundError, PublishError

__all__ = ["RecordLog"]

R = TypeVar("R")


class RecordLog(Generic[R]):
    """The versions of the records of one kind, by name; each read behind the store's
    boundary (:func:`~._artifacts.boundary`)."""

    kind: str  # "decision", "rollout": the word the store's errors use
    directory: str  # below the store's root
    record_file: str  # in each version
    stored: Callable[[str, int, dict[str, Any], dict[str, Any], bool], R]  # the result type

    def __init__(self, ctx: ReadContext) -> None:
        self.artifacts = ArtifactKind(
            ctx, self.kind, (self.directory,), self._verified, json_files=(self.record_file,)
        )
        self.dirs = self.artifacts.dir

    def check(self, record: object) -> str | None:
        """Why ``record`` is not a record of this kind (read from the store), or None."""
        raise NotImplementedError

    def check_new(self, record: Mapping[str, Any]) -> str | None:
        """Why ``record`` may not be published, or None (by default :meth:`check`)."""
        return self.check(dict(record))

    def publish(self, name: str, record: Mapping[str, Any], expected: int | None) -> int:
        """Publish and promote ``record`` if version ``expected`` (None: none yet) is still
        the active one; else :class:`ConflictError`."""
        with self.artifacts.boundary(name):
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

    def names(self) -> list[str]:
        return self.artifacts.names()

    def active_version(self, name: str) -> int | None:
        """The record in force (one small pointer read), None when there is none yet."""
        with self.artifacts.boundary(name):
            pointer = self.dirs.read_pointer(check_name(name, kind=self.kind))
            return None if pointer is None else int(pointer["version"])

    def load(self, name: str, version: int | None = None) -> R | None:
        """The verified record ``version`` (``None``: the one in force, or None when none)."""
        with self.artifacts.boundary(name) as where:
            if version is None:
                version = self.active_version(name)
                if version is None:
                    return None
            else:
                where.at(int(version))
            return self.artifacts.load(name, int(version))

    def history(self, name: str) -> list[R]:
        """Every version of ``name``, oldest first."""
        with self.artifacts.boundary(name):
            versions = self.dirs.versions(check_name(name, kind=self.kind))
            if not versions:
                raise ModelNotFoundError(name, None, kind=self.kind)
            return [self.artifacts.load(name, v) for v in versions]

    def _verified(self, found: Found) -> R:
        if self.record_file not in found.contents:
            raise found.refuse(self.record_file, "missing")
        record = found.json(self.record_file)
        problem = self.check(record)
        if problem is not None:
            raise found.refuse(self.record_file, problem)
        assert isinstance(record, dict)  # check refuses anything else
        return self.stored(found.name, found.version, record, found.manifest, found.signed)
