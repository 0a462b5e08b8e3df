"""What every kind of versioned artifact shares, implemented once.

Models, strategies, reference profiles, data sets, decisions and rollouts are each one
:class:`ArtifactKind`: its word in errors, its directory, its manifest check, the JSON files it
caps and its loader. A load is always the same steps: resolve the version, read the manifest
(signature, pointer sequence), check the kind's fields, verify every listed file against its
sha256 within its cap, and only then build the result from those very bytes (:class:`Found`).
Every read goes through :func:`boundary`.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from ._arrays_io import load_arrays
from ._json import parse_json
from ._limits import StoreLimits
from ._manifest import MANIFEST_NAME, ReadContext, read_manifest, read_verified_files
from ._refused import Refused
from ._versions import POINTER_NAME, VersionedDir
from .errors import IntegrityError, ModelNotFoundError, ModelStoreError

__all__ = ["ArtifactKind", "Found", "Where", "boundary", "version_arg"]

T = TypeVar("T")
_MAX_REASON = 300


class Where:
    """The file being read, so an unexpected error can name it."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        self.version: int | None = None
        self.filename = POINTER_NAME

    def at(self, version: int, filename: str = MANIFEST_NAME) -> None:
        self.version, self.filename = version, filename


@contextlib.contextmanager
def boundary(kind: str, name: str) -> Iterator[Where]:
    """One rule for every read: anything that is not a ModelStoreError becomes one.

    A loader can fail in ways no list of exception types covers (a skops node raising
    ``KeyError``, ``RecursionError``, ``MemoryError``, torch's ``RuntimeError``); the caller
    (hot reload, start-up) handles one exception family, and the message names the file.
    """
    where = Where(kind, name)
    try:
        yield where
    except ModelStoreError:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if len(reason) > _MAX_REASON:
            reason = reason[:_MAX_REASON] + "..."
        raise IntegrityError(
            name, where.version, where.filename, f"cannot be loaded ({reason})", kind=kind
        ) from exc


def version_arg(version: Any) -> int | None:
    """Caller errors stay TypeErrors: a bool, float or str is not a version."""
    if version is None:
        return None
    if isinstance(version, bool):
        raise TypeError(f"version must be an int, got {version!r}")
    return operator.index(version)


@dataclass(frozen=True)
class Found:
    """A version whose manifest and listed files were verified: what a loader builds from."""

    kind: str
    name: str
    version: int
    manifest: dict[str, Any]
    signed: bool
    fields: Any  # what the kind's manifest check returned
    contents: Mapping[str, bytes]
    limits: StoreLimits
    where: Where
    threads: int = 0  # a model's predict threads (0: the library's default)

    def file(self, filename: str) -> bytes:
        """The verified bytes of ``filename`` (errors from here on name it)."""
        self.where.at(self.version, filename)
        try:
            return self.contents[filename]
        except KeyError as exc:
            raise self.refuse(filename, "not in the manifest") from exc

    def json(self, filename: str) -> object:
        """``filename`` parsed as JSON within the store's caps."""
        data = self.file(filename)
        try:
            return parse_json(
                data, max_bytes=self.limits.max_json_bytes, max_depth=self.limits.max_json_depth
            )
        except Refused as exc:
            raise self.refuse(filename, str(exc)) from exc

    def arrays(self, filename: str) -> dict[str, np.ndarray]:
        """``filename``'s npz arrays, read eagerly and never unpickled."""
        data = self.file(filename)
        return load_arrays(
            data,
            name=self.name,
            version=self.version,
            filename=filename,
            kind=self.kind,
            limits=self.limits,
        )

    def refuse(self, filename: str, problem: str) -> IntegrityError:
        return IntegrityError(self.name, self.version, filename, problem, kind=self.kind)


def _no_fields(manifest: Mapping[str, Any]) -> None:
    return None


class ArtifactKind(Generic[T]):
    """The versions of one kind of artifact, by name, and how one is loaded.

    Parameters
    ----------
    ctx : ReadContext
        The store's root, limits, signer and pointer high-water marks.
    kind : str
        The word the store's errors use ("model", "strategy", ...).
    collection : tuple of str
        The kind's directory below the root (``()`` for models).
    loader : callable
        ``Found -> T``: builds the result from the verified bytes.
    check : callable, optional
        ``manifest -> fields``: the kind's manifest fields, checked (raises the store's
        error); its answer is :attr:`Found.fields`.
    json_files : tuple of str
        Files of each version read as JSON: capped at ``limits.max_json_bytes``.
    latest_by_default : bool
        Versions are never promoted: ``load(name)`` loads the latest (data sets).
    """

    def __init__(
        self,
        ctx: ReadContext,
        kind: str,
        collection: tuple[str, ...],
        loader: Callable[[Found], T],
        *,
        check: Callable[[Mapping[str, Any]], object] = _no_fields,
        json_files: tuple[str, ...] = (),
        latest_by_default: bool = False,
    ) -> None:
        self.ctx, self.kind = ctx, kind
        self.dir = VersionedDir(ctx, collection, kind)
        self._loader, self._check = loader, check
        self._json_files = json_files
        self._latest_by_default = latest_by_default

    def boundary(self, name: str) -> contextlib.AbstractContextManager[Where]:
        return boundary(self.kind, name)

    def names(self) -> list[str]:
        """Names with at least one complete version."""
        with self.boundary("*"):
            return self.dir.names()

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name``, ascending (empty if none)."""
        with self.boundary(name):
            return self.dir.versions(name)

    def active_version(self, name: str) -> int:
        with self.boundary(name):
            return self.dir.active_version(name)

    def promote(self, name: str, version: int) -> None:
        with self.boundary(name):
            self.dir.promote(name, version)

    def rollback(self, name: str) -> int:
        with self.boundary(name):
            return self.dir.rollback(name)

    def history(self, name: str) -> list[dict[str, Any]]:
        with self.boundary(name):
            return self.dir.history(name)

    def manifest(self, name: str, version: int | None) -> tuple[int, dict[str, Any], bool]:
        """``(version, manifest, signed)`` of a version (``None``: the promoted one), its
        signature verified and its files not read."""
        version = version_arg(version)
        with self.boundary(name) as where:
            version = self.dir.resolve(name, version)
            where.at(version)
            parts = self.dir.parts(name, version)
            manifest, signed = read_manifest(self.ctx, parts, name, version, kind=self.kind)
            return version, manifest, signed

    def load(
        self,
        name: str,
        version: int | None = None,
        *,
        threads: int = 0,
        checked: Mapping[str, Any] | None = None,
    ) -> T:
        """Verify a version (``None``: the promoted one, or the latest) and build it.

        ``checked``: the manifest's ``files`` as a trial load saw them; other files are
        refused.
        """
        version = version_arg(version)
        with self.boundary(name) as where:
            return self._loader(self.read(name, version, where, threads=threads, checked=checked))

    def read(
        self,
        name: str,
        version: int | None,
        where: Where,
        *,
        threads: int = 0,
        checked: Mapping[str, Any] | None = None,
    ) -> Found:
        """The verified manifest and files of a version, inside the caller's boundary."""
        if version is None and self._latest_by_default:
            available = self.dir.versions(name)
            if not available:
                raise ModelNotFoundError(name, None, kind=self.kind)
            version = available[-1]
        version = self.dir.resolve(name, version)
        where.at(version)
        parts = self.dir.parts(name, version)
        manifest, signed = read_manifest(self.ctx, parts, name, version, kind=self.kind)
        if checked is not None and manifest["files"] != checked:
            raise IntegrityError(
                name,
                version,
                MANIFEST_NAME,
                "its files changed since their trial load",
                kind=self.kind,
            )
        fields = self._check(manifest)
        caps = dict.fromkeys(self._json_files, self.ctx.limits.max_json_bytes)
        contents = read_verified_files(self.ctx, parts, manifest, kind=self.kind, caps=caps)
        return Found(
            self.kind,
            name,
            version,
            manifest,
            signed,
            fields,
            contents,
            self.ctx.limits,
            where,
            threads,
        )
