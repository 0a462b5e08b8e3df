"""Durable file writes, atomic replacement and advisory locks.

A version becomes visible only through ``os.rename`` of a fully written, fsynced directory,
and a pointer file changes only through ``os.replace`` of a fsynced temporary file, so a
crash at any moment leaves either the old state or the new one on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "TMP_PREFIX",
    "atomic_write_json",
    "fsync_dir",
    "locked",
    "remove_stale_temps",
    "write_bytes_durable",
]

#: Names starting with this prefix are in-progress writes, never part of the store.
TMP_PREFIX = ".tmp-"


def fsync_dir(path: Path) -> None:
    """Flush a directory entry table to disk (makes renames inside it durable)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_durable(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` and fsync it; fails if ``path`` exists."""
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_json(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON: readers see the old or the new file, never a mix."""
    tmp = path.parent / f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex}"
    try:
        write_bytes_durable(tmp, json.dumps(obj, indent=1, sort_keys=True).encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``lock_path`` (created if missing).

    The kernel releases the lock when the holder dies, even by SIGKILL.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_stale_temps(directory: Path) -> list[str]:
    """Delete leftovers of interrupted writes in ``directory``; returns the names removed.

    Call only while holding the directory's lock: every writer holds it for the whole
    write, so whatever temp entry is visible then belongs to a writer that died.
    """
    removed = []
    for entry in directory.glob(f"{TMP_PREFIX}*"):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed
