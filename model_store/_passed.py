"""Trial loads that passed, remembered across this user's processes.

A worker that starts again with the same model files, limits and libraries need not try them in
a child again: the same bytes load the same way. A passed trial is recorded under a key that
covers the version's whole manifest (the sha256 and size of every file), the limits, the thread
count, and the Python and library versions; the process that finds it still verifies every byte
it loads against that manifest. Only passes are recorded: a refusal is tried again each time.

The record is a directory of the worker's own user (created mode 0700). Unlike the store, which
may be written by others, whoever can write there can already change what the worker runs. A
directory owned by another user, or that others may write, is not used (one warning); neither is
an entry that is not a regular file of this user's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._manifest import library_versions

__all__ = ["PassedTrials", "default_directory"]

log = logging.getLogger("model_store")
_MAX_ENTRY_BYTES = 1 << 20


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/streamfuse/trials``, or ``~/.cache/streamfuse/trials``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "streamfuse" / "trials"


@functools.cache
def _versions() -> str:
    return json.dumps(library_versions(), sort_keys=True)


class PassedTrials:
    """The passed trials recorded in ``directory`` (created on first use)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._usable: bool | None = None

    @staticmethod
    def key(manifest: Mapping[str, Any], limits: str, threads: int) -> str:
        text = json.dumps([manifest, limits, threads, _versions()], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str, files: Mapping[str, Any]) -> bool:
        """Whether a trial of ``key`` passed, having checked exactly ``files``."""
        if not self._ready():
            return False
        try:
            fd = os.open(self.directory / f"{key}.json", os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if not _own_regular(st) or st.st_size > _MAX_ENTRY_BYTES:
                return False
            with os.fdopen(fd, "rb", closefd=False) as f:
                entry = json.loads(f.read())
        except (OSError, ValueError):
            return False
        finally:
            os.close(fd)
        return isinstance(entry, dict) and entry.get("files") == files

    def put(self, key: str, files: Mapping[str, Any]) -> None:
        """Record that a trial of ``key`` passed, having checked ``files`` (best effort)."""
        if not self._ready():
            return
        try:
            with tempfile.NamedTemporaryFile(
                "wb", dir=self.directory, prefix=".", suffix=".tmp", delete=False
            ) as f:
                f.write(json.dumps({"files": files}, sort_keys=True).encode())
            os.replace(f.name, self.directory / f"{key}.json")
        except OSError as exc:
            log.debug("could not record a passed trial in %s: %s", self.directory, exc)

    def _ready(self) -> bool:
        if self._usable is None:
            self._usable = self._check()
        return self._usable

    def _check(self) -> bool:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = os.stat(self.directory, follow_symlinks=False)
        except OSError as exc:
            log.warning("trials are not remembered: %s: %s", self.directory, exc)
            return False
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            reason = "not a directory of this user's"
        elif st.st_mode & 0o022:
            reason = "others may write it"
        else:
            return True
        log.warning("trials are not remembered: %s is %s", self.directory, reason)
        return False


def _own_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
