"""Integer-versioned directories with atomic publish and a promotion pointer.

Layout of one artifact (``<collection>/<name>/``)::

    .lock            flock target: held for a whole publish and for pointer updates
    .tmp-<uuid>/     a publish in progress (or left by a crashed one; removed on next publish)
    1/ 2/ ...        complete versions: manifest.json plus the files it lists
    active.json      {"kind", "name", "version": 2, "sequence": 3, "stack": [1, 2],
                     "history": [...]}, signed when the store has a key, replaced atomically

Everything is reached through :mod:`model_store._fs`, so no symlink below the store root is
followed, for reading or writing.

Rollback is explicit. Every pointer written carries a ``sequence`` above the pointer it
replaces, above any this process has read, and at least the time of writing in microseconds
(promotions and rollbacks alike), and a reader
refuses a pointer whose sequence is lower than the newest it has read for that artifact: an
older, validly signed ``active.json`` put back is a replay, not a rollback (``store rollback``
writes a new, higher one). The high-water mark is kept in the reading process
(:class:`~model_store._manifest.ReadContext`), not beside the store: whoever can put an old
pointer back can put an old mark file back too (a signed mark would be replayable like the
pointer), while a running worker's memory is out of their reach. The limit: a process that
starts after a replay has seen nothing newer and takes the replayed pointer (with a key, it
is still one this store signed). Pointers written before sequences existed read as sequence 0.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import re
import stat
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _atomic, _fs
from ._json import parse_json
from ._manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    MAX_VERSION,
    ReadContext,
    file_digests,
    is_version,
    library_versions,
    now_iso,
    read_manifest,
    read_verified_files,
)
from ._refused import Refused
from ._signing import MANIFEST_PURPOSE, POINTER_PURPOSE, SIGNATURE_FIELD
from .errors import (
    ConflictError,
    InvalidNameError,
    ModelNotFoundError,
    RollbackError,
    SignatureError,
    StoreLayoutError,
)

__all__ = ["POINTER_NAME", "VersionedDir", "check_name"]

log = logging.getLogger("model_store")

POINTER_NAME = "active.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_VERSION_DIR = re.compile(r"[1-9][0-9]{0,9}")
_MAX_HISTORY = 200
_MAX_SEQUENCE = 2**53  # exact in every JSON reader
#: ``publish(expected_active=ANY)``: publish whatever is active now.
ANY = object()


def check_name(name: str, *, kind: str) -> str:
    """Artifact names become directory names: letters, digits, ``_.-``, no leading symbol."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise InvalidNameError(name, kind=kind)
    return name


def _version_of(entry: str) -> int | None:
    if _VERSION_DIR.fullmatch(entry) is None:
        return None
    version = int(entry)
    return version if version <= MAX_VERSION else None


class VersionedDir:
    """One collection of versioned artifacts (models, strategies or data sets)."""

    def __init__(self, ctx: ReadContext, collection: tuple[str, ...], kind: str) -> None:
        self.ctx = ctx
        self.collection = collection
        self.kind = kind

    @property
    def root(self) -> Path:
        return self.ctx.root.joinpath(*self.collection)

    def parts(self, name: str, version: int | None = None) -> list[str]:
        base = [*self.collection, check_name(name, kind=self.kind)]
        return base if version is None else [*base, str(version)]

    def path(self, name: str, version: int | None = None) -> Path:
        return self.ctx.root.joinpath(*self.parts(name, version))

    def _layout_error(self, name: str, exc: Refused) -> StoreLayoutError:
        return StoreLayoutError(str(self.path(name)), exc.reason)

    def names(self) -> list[str]:
        """Names with at least one complete version (symlinked folders are not listed)."""
        try:
            with _fs.open_dir(self.ctx.root, self.collection) as dir_fd:
                found = _fs.entries(dir_fd)
        except (FileNotFoundError, Refused):
            return []
        return sorted(
            entry
            for entry, mode in found.items()
            if stat.S_ISDIR(mode) and _NAME.fullmatch(entry) and self.versions(entry)
        )

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name`` (real folders with a manifest), ascending."""
        try:
            with _fs.open_dir(self.ctx.root, self.parts(name)) as dir_fd:
                return sorted(
                    version
                    for entry, mode in _fs.entries(dir_fd).items()
                    if stat.S_ISDIR(mode)
                    and (version := _version_of(entry)) is not None
                    and _fs.regular_size(dir_fd, f"{entry}/{MANIFEST_NAME}") is not None
                )
        except FileNotFoundError:
            return []
        except Refused as exc:
            raise self._layout_error(name, exc) from exc

    def publish(
        self,
        name: str,
        files: Mapping[str, bytes],
        fields: Mapping[str, Any],
        *,
        promote: bool,
        expected_active: Any = ANY,
    ) -> int:
        """Write ``files`` plus a (signed) manifest as the next version of ``name``.

        Everything goes into ``.tmp-<uuid>/`` first, is fsynced, and only then renamed to
        ``<version>/``. The lock is held throughout, so concurrent publishers get distinct
        versions and any temp directory seen under the lock is a crashed publisher's.
        With ``expected_active`` (a version, or None for "nothing promoted yet") the publish
        happens only if that is still the promoted version, else :class:`ConflictError`.
        """
        try:
            with (
                _fs.open_dir(self.ctx.root, self.parts(name), create=True) as base_fd,
                _atomic.locked(base_fd),
            ):
                if expected_active is not ANY:
                    pointer = self.read_pointer(name)
                    current = int(pointer["version"]) if pointer else None
                    if current != expected_active:
                        raise ConflictError(name, expected_active, current, kind=self.kind)
                return self._publish_locked(base_fd, name, files, fields, promote)
        except Refused as exc:
            raise self._layout_error(name, exc) from exc

    def _publish_locked(
        self,
        base_fd: int,
        name: str,
        files: Mapping[str, bytes],
        fields: Mapping[str, Any],
        promote: bool,
    ) -> int:
        _atomic.remove_stale_temps(base_fd)
        # Count every numeric entry, complete or not, so a version number is never reused.
        taken = [v for e in os.listdir(base_fd) if (v := _version_of(e)) is not None]
        version = max(taken, default=0) + 1
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "name": name,
            "version": version,
            **fields,
            "files": file_digests(files),
            "created": now_iso(),
            "library_versions": library_versions(),
        }
        manifest = self.ctx.signer.sign(MANIFEST_PURPOSE, manifest)
        tmp = f"{_atomic.TMP_PREFIX}{uuid.uuid4().hex}"
        os.mkdir(tmp, 0o755, dir_fd=base_fd)
        with _fs.open_dir(self.ctx.root, [*self.parts(name), tmp]) as tmp_fd:
            for filename, data in files.items():
                _atomic.write_bytes_durable(filename, data, dir_fd=tmp_fd)
            _atomic.write_bytes_durable(
                MANIFEST_NAME, json.dumps(manifest, indent=1).encode(), dir_fd=tmp_fd
            )
            os.fsync(tmp_fd)
        os.rename(tmp, str(version), src_dir_fd=base_fd, dst_dir_fd=base_fd)
        os.fsync(base_fd)
        if promote:
            self._set_active(base_fd, name, version, "promote")
        return version

    def read_pointer(self, name: str) -> dict[str, Any] | None:  # noqa: C901 (one refusal per way a pointer can be wrong)
        """The parsed, verified pointer file, or ``None`` when nothing was ever promoted."""
        path = str(self.path(name) / POINTER_NAME)
        try:
            with _fs.open_dir(self.ctx.root, self.parts(name)) as dir_fd:
                data = _fs.read_regular(
                    dir_fd, POINTER_NAME, max_bytes=self.ctx.limits.max_json_bytes
                )
        except FileNotFoundError:
            return None
        except Refused as exc:
            raise StoreLayoutError(path, exc.reason) from exc
        except OSError as exc:
            raise StoreLayoutError(path, f"unreadable pointer file: {exc}") from exc
        try:
            pointer = parse_json(
                data,
                max_bytes=self.ctx.limits.max_json_bytes,
                max_depth=self.ctx.limits.max_json_depth,
            )
        except Refused as exc:
            raise StoreLayoutError(path, f"unreadable pointer file: {exc}") from exc
        if not isinstance(pointer, dict):
            raise StoreLayoutError(path, "pointer file is not an object")

        def refuse_signature(reason: str) -> SignatureError:
            return SignatureError(name, None, POINTER_NAME, reason, kind=self.kind)

        self.ctx.signer.verify(POINTER_PURPOSE, pointer, where=path, raise_as=refuse_signature)
        if not is_version(pointer.get("version")):
            raise StoreLayoutError(
                path, f"pointer 'version' must be an integer in [1, {MAX_VERSION}]"
            )
        for key, expected in (("kind", self.kind), ("name", name)):
            if pointer.get(key, expected) != expected:
                raise StoreLayoutError(path, f"pointer is for {key} {pointer.get(key)!r}")
        stack, history = pointer.get("stack", []), pointer.get("history", [])
        if not (isinstance(stack, list) and all(is_version(v) for v in stack)):
            raise StoreLayoutError(path, "pointer 'stack' must be a list of versions")
        if not (isinstance(history, list) and all(isinstance(h, dict) for h in history)):
            raise StoreLayoutError(path, "pointer 'history' must be a list of objects")
        sequence = pointer.get("sequence", 0)
        if type(sequence) is not int or not 0 <= sequence <= _MAX_SEQUENCE:
            raise StoreLayoutError(path, "pointer 'sequence' must be a non-negative integer")
        artifact = tuple(self.parts(name))
        newest = self.ctx.newest.get(artifact, 0)
        if sequence < newest:
            raise SignatureError(
                name,
                None,
                POINTER_NAME,
                f"is sequence {sequence}, older than sequence {newest} already read: a "
                "pointer put back is refused (store rollback writes a newer one)",
                kind=self.kind,
            )
        self.ctx.newest[artifact] = sequence
        return pointer

    def active_version(self, name: str) -> int:
        """The promoted version: one small file read, cheap enough to poll every second."""
        pointer = self.read_pointer(name)
        if pointer is None:
            raise ModelNotFoundError(name, None, kind=self.kind, available=self.versions(name))
        return int(pointer["version"])

    def resolve(self, name: str, version: int | None) -> int:
        """``version`` itself if it exists; the promoted version when ``None``."""
        if version is None:
            version = self.active_version(name)
        if isinstance(version, bool):
            raise TypeError(f"version must be an int, got {version!r}")
        version = operator.index(version)  # accepts numpy integers, refuses floats and str
        if not is_version(version):
            raise ModelNotFoundError(name, version, kind=self.kind, available=self.versions(name))
        try:
            with _fs.open_dir(self.ctx.root, self.parts(name, version)) as dir_fd:
                complete = _fs.regular_size(dir_fd, MANIFEST_NAME) is not None
        except FileNotFoundError:
            complete = False
        except Refused as exc:
            raise StoreLayoutError(str(self.path(name, version)), exc.reason) from exc
        if not complete:
            raise ModelNotFoundError(name, version, kind=self.kind, available=self.versions(name))
        return version

    def promote(self, name: str, version: int) -> None:
        """Point ``name`` at ``version`` (atomic replace of the pointer file)."""
        version = self.resolve(name, version)
        try:
            with (
                _fs.open_dir(self.ctx.root, self.parts(name)) as base_fd,
                _atomic.locked(base_fd),
            ):
                self._set_active(base_fd, name, version, "promote")
        except Refused as exc:
            raise self._layout_error(name, exc) from exc

    def rollback(self, name: str) -> int:
        """Return to the version promoted before the current one; returns it."""
        try:
            with (
                _fs.open_dir(self.ctx.root, self.parts(name)) as base_fd,
                _atomic.locked(base_fd),
            ):
                pointer = self.read_pointer(name)
                stack = list(pointer["stack"]) if pointer else []
                if len(stack) < 2:
                    raise RollbackError(name, kind=self.kind)
                stack.pop()
                self.resolve(name, stack[-1])
                self._write_pointer(base_fd, name, pointer, stack, "rollback")
                return int(stack[-1])
        except FileNotFoundError as exc:
            raise ModelNotFoundError(name, None, kind=self.kind) from exc
        except Refused as exc:
            raise self._layout_error(name, exc) from exc

    def sign_unsigned(self, name: str) -> list[str]:
        """Sign the unsigned manifests and pointer of ``name`` in place (``store sign``); the
        files of each manifest are checked against it first, under the lock. Returns the
        files signed, relative to the store root; a version that fails its check is refused
        (what was signed before it stays signed)."""
        signed: list[str] = []
        try:
            with (
                _fs.open_dir(self.ctx.root, self.parts(name)) as base_fd,
                _atomic.locked(base_fd),
            ):
                for version in self.versions(name):
                    parts = self.parts(name, version)
                    with _fs.open_dir(self.ctx.root, parts) as dir_fd:
                        _atomic.remove_stale_temps(dir_fd)  # a sign that died; we hold the lock
                        manifest, was_signed = read_manifest(
                            self.ctx, parts, name, version, kind=self.kind
                        )
                        if was_signed:
                            continue
                        read_verified_files(self.ctx, parts, manifest, kind=self.kind)
                        doc = self.ctx.signer.sign(MANIFEST_PURPOSE, manifest)
                        data = json.dumps(doc, indent=1).encode()
                        _atomic.atomic_write(dir_fd, MANIFEST_NAME, data)
                    signed.append("/".join([*parts, MANIFEST_NAME]))
                pointer = self.read_pointer(name)
                if pointer is not None and SIGNATURE_FIELD not in pointer:
                    stack = list(pointer.get("stack", []))
                    if not stack or stack[-1] != pointer["version"]:
                        stack.append(pointer["version"])
                    self._write_pointer(base_fd, name, pointer, stack, "sign")
                    signed.append("/".join([*self.parts(name), POINTER_NAME]))
        except Refused as exc:
            raise self._layout_error(name, exc) from exc
        return signed

    def history(self, name: str) -> list[dict[str, Any]]:
        """Promotions and rollbacks, oldest first: ``{"version", "action", "at"}``."""
        pointer = self.read_pointer(name)
        return list(pointer.get("history", [])) if pointer else []

    def _set_active(self, base_fd: int, name: str, version: int, action: str) -> None:
        try:
            pointer = self.read_pointer(name)
        except (StoreLayoutError, SignatureError) as exc:
            # A publisher with the key repairs a broken or unsigned pointer; its stack and
            # history are not trusted, so they start afresh.
            log.warning("replacing the pointer of %s %r: %s", self.kind, name, exc)
            pointer = None
        stack = list(pointer["stack"]) if pointer else []
        if not stack or stack[-1] != version:
            stack.append(version)
        self._write_pointer(base_fd, name, pointer, stack, action)

    def _write_pointer(
        self,
        base_fd: int,
        name: str,
        old: dict[str, Any] | None,
        stack: list[int],
        action: str,
    ) -> None:
        history = list(old.get("history", [])) if old else []
        if action != "sign":
            history.append({"version": stack[-1], "action": action, "at": now_iso()})
        artifact = tuple(self.parts(name))
        old_sequence = old.get("sequence", 0) if old else 0
        # Above the pointer replaced and any read here, and at least the time in microseconds:
        # a writer that finds a replayed pointer (another process, a fresh start) still writes
        # one newer than what a running reader has seen, so a promotion or rollback made after
        # a replay is taken, not refused as one.
        sequence = max(
            old_sequence + 1, self.ctx.newest.get(artifact, 0) + 1, time.time_ns() // 1000
        )
        pointer = self.ctx.signer.sign(
            POINTER_PURPOSE,
            {
                "kind": self.kind,
                "name": name,
                "version": stack[-1],
                "sequence": sequence,
                "stack": stack[-_MAX_HISTORY:],
                "history": history[-_MAX_HISTORY:],
            },
        )
        data = json.dumps(pointer, indent=1, sort_keys=True).encode()
        _atomic.atomic_write(base_fd, POINTER_NAME, data)
        self.ctx.newest[artifact] = sequence
