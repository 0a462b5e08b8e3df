"""Rows kept by id as whole per-batch arrays, for the label join (no per-event objects)."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from typing import Any

import numpy as np

__all__ = ["RowStore"]

_NO_ROW = -1


@dataclass
class _Chunk:
    start: int  # global row number of row 0
    added: float
    ids: list[Any]
    arrays: dict[str, np.ndarray]  # each with rows on axis 0
    n_live: int  # rows still reachable through the index


class RowStore:
    """Rows kept by id as whole arrays per chunk; evicted a whole chunk at a time, oldest first.

    The index maps an id to a global row number; a chunk is found from it by ``searchsorted``
    on the chunks' starts, so joins gather rows with numpy fancy indexing.
    """

    def __init__(self) -> None:
        self._index: dict[Any, int] = {}
        self._chunks: deque[_Chunk] = deque()
        self._starts = np.zeros(0, dtype=np.int64)
        self._next = 0

    def __len__(self) -> int:
        return len(self._index)

    def has_any(self, ids: Sequence[Any]) -> bool:
        return bool(self._index) and not self._index.keys().isdisjoint(ids)

    def add(self, ids: Sequence[Any], arrays: dict[str, np.ndarray], now: float) -> int:
        """Keep ``ids``' rows of ``arrays``; returns how many older rows they replaced."""
        replaced = 0
        if self.has_any(ids):  # re-delivered ids: the newer row wins
            replaced = int(self._pop(ids).size)
        before = len(self._index)
        start = self._next
        self._index.update(zip(ids, range(start, start + len(ids)), strict=True))
        self._next += len(ids)
        self._chunks.append(_Chunk(start, now, list(ids), arrays, len(self._index) - before))
        self._starts = np.append(self._starts, start)
        return replaced

    def take(self, ids: Sequence[Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Remove ``ids`` from the cache: ``(found mask over ids, their rows in order)``."""
        pos = self._positions(ids, pop=True)
        found = pos >= 0
        pos = pos[found]
        rows: dict[str, np.ndarray] = {}
        if not pos.size:
            return found, rows
        chunk_of = np.searchsorted(self._starts, pos, side="right") - 1
        used = np.unique(chunk_of)
        first = self._chunks[int(used[0])]
        for name, arr in first.arrays.items():
            rows[name] = np.empty((pos.size, *arr.shape[1:]), dtype=arr.dtype)
        for c in used.tolist():
            chunk = self._chunks[c]
            sel = chunk_of == c
            for name, out in rows.items():
                out[sel] = chunk.arrays[name][pos[sel] - chunk.start]
        self._release(chunk_of)
        return found, rows

    def expire(self, oldest: float, max_entries: int) -> int:
        """Drop chunks added before ``oldest`` and then while over ``max_entries`` rows;
        returns the live rows dropped."""
        dropped = 0
        while self._chunks and (self._chunks[0].added < oldest or len(self._index) > max_entries):
            chunk = self._chunks.popleft()
            self._starts = self._starts[1:]
            if chunk.n_live:
                dropped += chunk.n_live
                pos = self._positions(chunk.ids, pop=False)
                mine = (pos >= chunk.start) & (pos < chunk.start + len(chunk.ids))
                deque(map(self._index.__delitem__, compress(chunk.ids, mine)), maxlen=0)
        return dropped

    def _positions(self, ids: Sequence[Any], pop: bool) -> np.ndarray:
        lookup = self._index.pop if pop else self._index.get
        return np.fromiter(map(lookup, ids, repeat(_NO_ROW)), dtype=np.int64, count=len(ids))

    def _pop(self, ids: Sequence[Any]) -> np.ndarray:
        pos = self._positions(ids, pop=True)
        pos = pos[pos >= 0]
        if pos.size:
            self._release(np.searchsorted(self._starts, pos, side="right") - 1)
        return pos

    def _release(self, chunk_of: np.ndarray) -> None:
        counts = np.bincount(chunk_of, minlength=len(self._chunks))
        for c in np.flatnonzero(counts).tolist():
            self._chunks[c].n_live -= int(counts[c])
        if any(chunk.n_live == 0 for chunk in self._chunks):
            self._chunks = deque(chunk for chunk in self._chunks if chunk.n_live > 0)
            self._starts = np.array([chunk.start for chunk in self._chunks], dtype=np.int64)
