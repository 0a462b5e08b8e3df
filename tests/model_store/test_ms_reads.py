"""A listed file is read once into one buffer (issue 23, Build 5), after short reads too, and a
file whose size changes between ``fstat`` and the read is refused."""

from __future__ import annotations

import io
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from model_store import _fs
from model_store._refused import Refused

_MiB = 1 << 20


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def test_short_reads_fill_the_one_buffer(
    tmp_path: Path, folder: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read returns at most 1 MiB (as a signal or a read past 2 GiB would cut it
    short): the file comes whole, and the memory it took is its size once, not twice."""
    payload = os.urandom(64 * _MiB)
    (tmp_path / "arrays.npz").write_bytes(payload)
    sizes: list[int] = []

    class ShortReads(io.FileIO):
        def readinto(self, buffer: Any) -> int | None:
            with memoryview(buffer) as view:
                n = super().readinto(view[:_MiB])
            sizes.append(n or 0)
            return n

    monkeypatch.setattr(
        _fs, "io", SimpleNamespace(FileIO=ShortReads, BufferedReader=io.BufferedReader)
    )
    tracemalloc.start()
    try:
        data = _fs.read_regular(folder, "arrays.npz", max_bytes=len(payload))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == payload
    assert len(sizes) >= 64  # short reads, one after the other
    assert peak < len(payload) + 4 * _MiB, f"{peak / _MiB:.0f} MiB for a 64 MiB file"


@pytest.mark.parametrize(("change", "read"), [(-1000, "1047576+"), (+1000, "1048576+")])
def test_a_file_that_changes_size_between_fstat_and_the_read_is_refused(
    tmp_path: Path, folder: int, monkeypatch: pytest.MonkeyPatch, change: int, read: str
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"x" * _MiB)
    real_fstat = os.fstat

    def then_change(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        with path.open("r+b") as fh:  # the file itself, after fstat saw its size
            fh.truncate(_MiB + change)
        return st

    monkeypatch.setattr(_fs.os, "fstat", then_change)
    with pytest.raises(Refused) as refused:
        _fs.read_regular(folder, "model.onnx", max_bytes=2 * _MiB, expected_size=_MiB)
    assert refused.value.file == "model.onnx"
    assert refused.value.reason == f"changed size while being read ({read} bytes read)"
