"""File access below the store root that never follows a link and never blocks.

Every path below the root is walked one component at a time through directory file
descriptors opened with ``O_NOFOLLOW | O_DIRECTORY`` (``openat``), so a symlink anywhere under
the root (a model folder, a version folder, a file, ``active.json``, ``.lock``) is refused
instead of followed, and nothing outside the root is opened, read or written. Files are
opened ``O_NONBLOCK`` (opening a FIFO cannot hang), checked with ``fstat`` to be regular
files, and read only up to a cap that is checked before the first byte. The root itself may
be a symlink: the operator chose it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from ._refused import Refused

__all__ = [
    "create_new",
    "entries",
    "open_dir",
    "read_regular",
    "regular_size",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_BUFFER = 1 << 16  # the buffered reader's own buffer: only a read's last part passes through it


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


def _open_child_dir(parent_fd: int, name: str, *, create: bool) -> int:
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=parent_fd)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
            raise Refused(f"{name!r} is {_kind(mode)}, not a directory", file=name) from exc
        raise


@contextlib.contextmanager
def open_dir(root: Path, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
    """A file descriptor for ``root/parts[0]/parts[1]/...``, every component a real directory.

    ``create`` makes missing components (mode 0755; the root too, with its parents).
    Raises ``FileNotFoundError`` for a missing component, :class:`Refused` for one that
    is a symlink or not a directory.
    """
    if create:
        root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            child = _open_child_dir(fd, part, create=create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def entries(dir_fd: int) -> dict[str, int]:
    """``{name: st_mode}`` of a directory's entries, links not followed."""
    out = {}
    for name in os.listdir(dir_fd):
        with contextlib.suppress(FileNotFoundError):  # removed while listing
            out[name] = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    return out


def regular_size(dir_fd: int, name: str) -> int | None:
    """Size of ``name`` if it is a regular file (not a link), else None."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def read_regular(
    dir_fd: int, name: str, *, max_bytes: int, expected_size: int | None = None
) -> bytes:
    """The bytes of regular file ``name`` in ``dir_fd``, refusing links, FIFOs and devices.

    The size (``fstat``) is checked against ``expected_size`` and ``max_bytes`` before
    reading, and at most that many bytes are read, so a file that grows meanwhile cannot
    push past the cap.
    """
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused("is a symlink", file=name) from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"is {_kind(st.st_mode)}, not a regular file", file=name)
        if expected_size is not None and st.st_size != expected_size:
            raise Refused(f"is {st.st_size} bytes, the manifest says {expected_size}", file=name)
        if st.st_size > max_bytes:
            raise Refused(f"is {st.st_size} bytes, over the cap of {max_bytes}", file=name)
        limit = st.st_size if expected_size is None else expected_size
        data = _read_exactly(fd, limit)
        if len(data) != limit or os.read(fd, 1):  # one more byte shows a file that grew
            raise Refused(f"changed size while being read ({len(data)}+ bytes read)", file=name)
        return data
    finally:
        os.close(fd)


def _read_exactly(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``fd``, fewer only at the end of the file, held once.

    The buffered reader's ``read(limit)`` allocates the one ``bytes`` object first and reads
    into it in place, again after a short read (a signal; Linux reads just under 2 GiB at a
    time), so the file is never held twice (chunks joined at the end held it twice: 2 GB for
    a 1 GB file). Whatever passes the buffered reader's own 64 KiB buffer is read straight
    into the result.
    """
    with io.FileIO(fd, closefd=False) as raw, io.BufferedReader(raw, _BUFFER) as reader:
        return reader.read(limit)


def create_new(dir_fd: int, name: str, data: bytes, *, mode: int = 0o644) -> None:
    """Create ``name`` (never an existing file or link: ``O_EXCL``), write ``data``, fsync."""
    fd = os.open(
        name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        mode,
        dir_fd=dir_fd,
    )
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
