"""Integer-versioned directories with atomic publish and a promotion pointer.

Layout of one artifact (``<collection>/<name>/``)::

    .lock            flock target: held for a whole publish and for pointer updates
    .tmp-<uuid>/     a publish in progress (or left by a crashed one; removed on next publish)
    1/ 2/ ...        complete versions: manifest.json plus the files it lists
    active.json      {"version": 2, "stack": [1, 2], "history": [...]}, replaced atomically
"""

from __future__ import annotations

import json
import operator
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import _atomic
from ._manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    file_digests,
    library_versions,
    now_iso,
)
from .errors import InvalidNameError, ModelNotFoundError, RollbackError, StoreLayoutError

__all__ = ["POINTER_NAME", "VersionedDir", "check_name"]

POINTER_NAME = "active.json"
LOCK_NAME = ".lock"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MAX_HISTORY = 200


def check_name(name: str, *, kind: str) -> str:
    """Artifact names become directory names: letters, digits, ``_.-``, no leading symbol."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidNameError(name, kind=kind)
    return name


class VersionedDir:
    """One collection of versioned artifacts (models, strategies or data sets)."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root = root
        self.kind = kind

    def path(self, name: str, version: int | None = None) -> Path:
        base = self.root / check_name(name, kind=self.kind)
        return base if version is None else base / str(version)

    def names(self) -> list[str]:
        """Names with at least one complete version."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and _NAME.match(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[int]:
        """Complete versions of ``name`` (those with a manifest), ascending."""
        base = self.path(name)
        if not base.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in base.iterdir()
            if p.name.isdigit() and not p.name.startswith("0") and (p / MANIFEST_NAME).is_file()
        )

    def _next_version(self, base: Path) -> int:
        # Count every numeric entry, complete or not, so a version number is never reused.
        taken = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
        return max(taken, default=0) + 1

    def publish(
        self,
        name: str,
        files: Mapping[str, bytes],
        fields: Mapping[str, Any],
        *,
        promote: bool,
    ) -> int:
        """Write ``files`` plus a manifest as the next version of ``name``; returns it.

        Everything goes into ``.tmp-<uuid>/`` first, is fsynced, and only then renamed to
        ``<version>/``. The lock is held throughout, so concurrent publishers get distinct
        versions and any temp directory seen under the lock is a crashed publisher's.
        """
        base = self.path(name)
        base.mkdir(parents=True, exist_ok=True)
        with _atomic.locked(base / LOCK_NAME):
            _atomic.remove_stale_temps(base)
            version = self._next_version(base)
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
            tmp = base / f"{_atomic.TMP_PREFIX}{uuid.uuid4().hex}"
            tmp.mkdir()
            for filename, data in files.items():
                _atomic.write_bytes_durable(tmp / filename, data)
            _atomic.write_bytes_durable(
                tmp / MANIFEST_NAME, json.dumps(manifest, indent=1).encode()
            )
            _atomic.fsync_dir(tmp)
            os.rename(tmp, base / str(version))
            _atomic.fsync_dir(base)
            if promote:
                self._set_active(base, version, "promote")
        return version

    def read_pointer(self, name: str) -> dict[str, Any] | None:
        """The parsed pointer file, or ``None`` when nothing was ever promoted."""
        path = self.path(name) / POINTER_NAME
        try:
            pointer = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreLayoutError(str(path), f"unreadable pointer file: {exc}") from exc
        if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), int):
            raise StoreLayoutError(str(path), "pointer file has no integer 'version'")
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
        if not (self.path(name, version) / MANIFEST_NAME).is_file():
            raise ModelNotFoundError(name, version, kind=self.kind, available=self.versions(name))
        return version

    def promote(self, name: str, version: int) -> None:
        """Point ``name`` at ``version`` (atomic replace of the pointer file)."""
        self.resolve(name, version)
        base = self.path(name)
        with _atomic.locked(base / LOCK_NAME):
            self._set_active(base, version, "promote")

    def rollback(self, name: str) -> int:
        """Return to the version promoted before the current one; returns it."""
        base = self.path(name)
        if not base.is_dir():
            raise ModelNotFoundError(name, None, kind=self.kind)
        with _atomic.locked(base / LOCK_NAME):
            pointer = self.read_pointer(name)
            stack = list(pointer["stack"]) if pointer else []
            if len(stack) < 2:
                raise RollbackError(name, kind=self.kind)
            stack.pop()
            self.resolve(name, stack[-1])
            self._write_pointer(base, pointer, stack, "rollback")
            return int(stack[-1])

    def history(self, name: str) -> list[dict[str, Any]]:
        """Promotions and rollbacks, oldest first: ``{"version", "action", "at"}``."""
        pointer = self.read_pointer(name)
        return list(pointer.get("history", [])) if pointer else []

    def _set_active(self, base: Path, version: int, action: str) -> None:
        pointer = self.read_pointer(base.name)
        stack = list(pointer["stack"]) if pointer else []
        if not stack or stack[-1] != version:
            stack.append(version)
        self._write_pointer(base, pointer, stack, action)

    def _write_pointer(
        self, base: Path, old: dict[str, Any] | None, stack: list[int], action: str
    ) -> None:
        history = list(old.get("history", [])) if old else []
        history.append({"version": stack[-1], "action": action, "at": now_iso()})
        _atomic.atomic_write_json(
            base / POINTER_NAME,
            {
                "version": stack[-1],
                "stack": stack[-_MAX_HISTORY:],
                "history": history[-_MAX_HISTORY:],
            },
        )
