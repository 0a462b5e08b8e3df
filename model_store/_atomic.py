"""Durable file writes, atomic replacement and advisory locks, all inside one directory fd.

A version becomes visible only through ``rename`` of a fully written, fsynced directory,
and a pointer file changes only through ``replace`` of a fsynced temporary file, so a
crash at any moment leaves either the old state or the new one on disk. Every call works
relative to a directory file descriptor from :func:`model_store._fs.open_dir`, and every
file is created with ``O_EXCL | O_NOFOLLOW``: a symlink planted in the store (``.lock``,
a model folder) is refused, never written through.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import uuid
from collections.abc import Iterator

from ._fs import create_new
from ._refused import Refused

__all__ = [
    "LOCK_NAME",
    "TMP_PREFIX",
    "atomic_write",
    "locked",
    "remove_stale_temps",
    "write_bytes_durable",
]

#: Names starting with this prefix are in-progress writes, never part of the store.
TMP_PREFIX = ".tmp-"
LOCK_NAME = ".lock"


def write_bytes_durable(name: str, data: bytes, *, dir_fd: int) -> None:
    """Create ``name`` in ``dir_fd`` with ``data`` and fsync it; fails if ``name`` exists."""
    create_new(dir_fd, name, data)


def atomic_write(dir_fd: int, name: str, data: bytes) -> None:
    """Replace ``name`` with ``data``: readers see the old or the new file, never a mix.

    ``replace`` swaps the directory entry itself, so a symlink at ``name`` is replaced, not
    followed.
    """
    tmp = f"{TMP_PREFIX}{name}-{uuid.uuid4().hex}"
    try:
        write_bytes_durable(tmp, data, dir_fd=dir_fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


@contextlib.contextmanager
def locked(dir_fd: int) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``.lock`` in ``dir_fd`` (created if missing).

    The kernel releases the lock when the holder dies, even by SIGKILL.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(LOCK_NAME, flags, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(f"{LOCK_NAME} is a symlink") from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused(f"{LOCK_NAME} is not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_stale_temps(dir_fd: int) -> list[str]:
    """Delete leftovers of interrupted writes in ``dir_fd``; returns the names removed.

    Call only while holding the directory's lock: every writer holds it for the whole
    write, so whatever temp entry is visible then belongs to a writer that died. Links are
    unlinked, never followed (``rmtree`` with ``dir_fd`` works on descriptors).
    """
    removed = []
    for name in os.listdir(dir_fd):
        if not name.startswith(TMP_PREFIX):
            continue
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        if stat.S_ISDIR(mode):
            shutil.rmtree(name, ignore_errors=True, dir_fd=dir_fd)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
        removed.append(name)
    return removed
