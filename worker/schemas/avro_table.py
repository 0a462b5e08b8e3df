"""Read the columns a prediction needs straight from a group's Avro bytes, with numpy.

An Avro record is its fields one after the other, each of a size its type tells: fixed-width
numbers (``double``, ``float``), zigzag varints (``int``, ``long``, an ``enum``'s index),
length-prefixed ``string`` and ``bytes``, one-byte ``boolean``, ``fixed`` of its declared size,
a ``["null", T]`` union as a branch byte then T or nothing; logical types are their base type
on the wire, named types are read as their definition. So every field's offset can be computed
for all records of a group at once: fixed-width runs gathered from the joined payloads, varints
decoded a byte position at a time over the whole group. No Python object is built per record
but the id. Any other schema (arrays, maps, other unions, a recursive type), or any record that
does not read cleanly (too short, bad UTF-8 in any string, an enum index out of range, a varint
over 10 bytes), returns None and the group is decoded by fastavro, so what a record decodes to,
or why it cannot, is unchanged.

The event time may be a ``long`` of logical type ``timestamp-millis`` or ``timestamp-micros``:
it is read in epoch seconds, as fastavro's ``datetime`` gives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.schemas.avro_leaves import NUMBERS, record_leaves

__all__ = ["TIME_SCALE", "AvroTable"]

_WIDTH = {"double": 8, "float": 4}
_DTYPE = {"double": "<f8", "float": "<f4"}
_VARINT = {"int", "long"}
#: Seconds per unit of the event-time logical types read (the value is divided by it).
TIME_SCALE = {"long@timestamp-millis": 1e3, "long@timestamp-micros": 1e6}
Columns = tuple[np.ndarray, list[Any], np.ndarray]
Spans = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Run:
    """Consecutive fixed-width fields: gathered for all records by one index, then viewed by
    ``dtype`` (field ``c<k>`` is the run's k-th leaf)."""

    width: int
    paths: tuple[str, ...]
    dtype: np.dtype[Any]


def _runs(leaves: Sequence[tuple[str, str]]) -> tuple[tuple[str, str] | _Run, ...]:
    steps: list[tuple[str, str] | _Run] = []
    run: list[tuple[str, str]] = []
    for leaf in [*leaves, ("", "")]:
        if leaf[1] in _WIDTH:
            run.append(leaf)
            continue
        if run:
            offsets = np.cumsum([0] + [_WIDTH[k] for _, k in run]).tolist()
            dtype = np.dtype(
                {
                    "names": [f"c{k}" for k in range(len(run))],
                    "formats": [_DTYPE[k] for _, k in run],
                    "offsets": offsets[:-1],
                    "itemsize": offsets[-1],
                }
            )
            steps.append(_Run(offsets[-1], tuple(p for p, _ in run), dtype))
            run = []
        if leaf[1]:
            steps.append(leaf)
    return tuple(steps)


@dataclass(frozen=True)
class AvroTable:
    """The record's leaves in order (dotted path, kind: see :mod:`.avro_leaves`), and which
    of them to read."""

    steps: tuple[tuple[str, str] | _Run, ...]
    features: tuple[str, ...]
    id_field: str
    ts_field: str | None
    wanted: frozenset[str]
    ts_scale: float = 1.0

    @classmethod
    def plan(
        cls, schema: Any, features: Sequence[str], id_field: str, ts_field: str | None
    ) -> AvroTable | None:
        """The plan for a writer schema (its JSON, as loaded), or None if it has a type the
        plan does not read, or the fields are not all leaves of a readable type."""
        leaves = record_leaves(schema)
        if leaves is None:
            return None
        kinds = {path: kind.strip("?") for path, kind in leaves}
        nullable = {path for path, kind in leaves if kind != kind.strip("?")}
        if id_field in nullable:
            return None  # a null id has its own reason, given record by record
        if any(kinds.get(p) not in NUMBERS for p in features):
            return None
        scale = 1.0
        if ts_field is not None:
            kind = kinds.get(ts_field, "")
            if kind not in NUMBERS and kind not in TIME_SCALE:
                return None
            scale = TIME_SCALE.get(kind, 1.0)
        if kinds.get(id_field) not in ("string", "string@uuid", *_VARINT):
            return None  # a uuid id is read as its text, as the fastavro path gives it
        wanted = frozenset([*features, id_field, *([ts_field] if ts_field else [])])
        return cls(_runs(leaves), tuple(features), id_field, ts_field, wanted, scale)

    def read(self, values: Sequence[bytes]) -> Columns | None:
        """``(X, ids, ts)`` of Confluent-framed ``values`` (5-byte frame, then the body), or
        None if one record does not read cleanly."""
        n = len(values)
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        ends = np.cumsum(lengths)
        pos = ends - lengths + 5
        joined = b"".join(values)
        data = np.frombuffer(joined, dtype=np.uint8)
        scanned = self._scan(data, pos, ends)
        if scanned is None:
            return None
        numbers, strings, texts = scanned
        ids = self._ids(joined, numbers, strings)
        if ids is None or not _utf8(joined, data, texts):
            return None
        X = np.empty((n, len(self.features)), dtype=np.float64)
        for j, path in enumerate(self.features):
            X[:, j] = numbers[path]
        if self.ts_field is None:
            ts = np.full(n, np.nan)
        else:
            ts = numbers[self.ts_field].astype(np.float64)
            if self.ts_scale != 1.0:
                ts = ts / self.ts_scale
        return X, ids, ts

    def _scan(
        self, data: np.ndarray, pos: np.ndarray, ends: np.ndarray
    ) -> tuple[dict[str, np.ndarray], dict[str, Spans], list[Spans]] | None:
        """Every leaf in wire order, for all records at once: the wanted numbers, where the
        wanted strings lie, and where every other string lies (its UTF-8 is checked); None once
        a record runs past its end or holds what its type forbids."""
        numbers: dict[str, np.ndarray] = {}
        strings: dict[str, Spans] = {}
        texts: list[Spans] = []
        for step in self.steps:
            if isinstance(step, _Run):
                if (pos + step.width > ends).any():
                    return None
                if self.wanted.intersection(step.paths):
                    numbers.update(self._gather(data, pos, step))
                pos = pos + step.width
                continue
            path, kind = step
            if kind != kind.strip("?"):
                read = _nullable(data, pos, ends, kind)
            else:
                read = _field(data, pos, ends, kind)
            if read is None:
                return None
            value, size = read
            if isinstance(value, tuple):
                if path in self.wanted:
                    strings[path] = value
                elif kind.strip("?").startswith("string"):
                    texts.append(value)
            elif path in self.wanted and value is not None:
                numbers[path] = value
            pos = pos + size
        return numbers, strings, texts

    def _gather(self, data: np.ndarray, pos: np.ndarray, run: _Run) -> dict[str, np.ndarray]:
        fixed = data[pos[:, None] + np.arange(run.width)].view(run.dtype)[:, 0]
        return {
            path: fixed[f"c{k}"].astype(np.float64)
            for k, path in enumerate(run.paths)
            if path in self.wanted
        }

    def _ids(
        self, joined: bytes, numbers: dict[str, np.ndarray], strings: dict[str, Spans]
    ) -> list[Any] | None:
        if self.id_field in numbers:
            ids: list[Any] = numbers[self.id_field].tolist()
            return ids
        starts, stops = strings[self.id_field]
        try:
            return [
                joined[a:b].decode() for a, b in zip(starts.tolist(), stops.tolist(), strict=True)
            ]
        except UnicodeDecodeError:
            return None


def _field(
    data: np.ndarray, pos: np.ndarray, ends: np.ndarray, kind: str
) -> tuple[np.ndarray | Spans | None, np.ndarray] | None:
    """The value of a leaf of ``kind`` at each ``pos`` (a number, or where a string or bytes
    lie), and its size in bytes; None if a record cannot hold it."""
    base = kind.partition("@")[0]
    if base in _WIDTH:
        width = _WIDTH[base]
        if (pos + width > ends).any():
            return None
        raw = data[pos[:, None] + np.arange(width)]
        return raw.view(_DTYPE[base])[:, 0].astype(np.float64), np.full(len(pos), width)
    if base == "boolean":  # one byte, any value (fastavro reads non-zero as true)
        return (None, np.ones(len(pos), dtype=np.int64)) if (pos < ends).all() else None
    if base.startswith("fixed:"):
        width = int(base[6:])
        return (None, np.full(len(pos), width)) if (pos + width <= ends).all() else None
    read = _varints(data, pos, ends)
    if read is None:
        return None
    value, size = read
    if base.startswith("enum:"):
        return None if ((value < 0) | (value >= int(base[5:]))).any() else (value, size)
    if base in ("string", "bytes"):
        start = pos + size
        if (value < 0).any() or (start + value > ends).any():
            return None
        return (start, start + value), size + value
    return value, size


def _nullable(
    data: np.ndarray, pos: np.ndarray, ends: np.ndarray, kind: str
) -> tuple[np.ndarray | Spans | None, np.ndarray] | None:
    """A ``["null", T]`` (kind ``?T``) or ``[T, "null"]`` (``T?``) union at each ``pos``: the
    branch index (one byte, 0 or 2 zigzagged), then T's value or nothing. A number is NaN for
    null, as fastavro's None becomes in a float array; a string's null is an empty span."""
    if (pos >= ends).any():
        return None
    byte = data[pos]
    if not ((byte == 0) | (byte == 2)).all():
        return None
    nulls = (byte >> 1) == (0 if kind.startswith("?") else 1)
    present = np.flatnonzero(~nulls)
    read = _field(data, pos[present] + 1, ends[present], kind.strip("?"))
    if read is None:
        return None
    value, inner = read
    size = np.ones(len(pos), dtype=np.int64)
    size[present] += inner
    if isinstance(value, tuple):
        starts, stops = np.zeros(len(pos), dtype=np.int64), np.zeros(len(pos), dtype=np.int64)
        starts[present], stops[present] = value
        return (starts, stops), size
    column = np.full(len(pos), np.nan)
    if value is not None:
        column[present] = value
    return column, size


def _utf8(joined: bytes, data: np.ndarray, texts: list[Spans]) -> bool:
    """Whether every string not read is valid UTF-8, as fastavro requires: one pass over the
    group's bytes finds the strings that are all ASCII; only the others are decoded."""
    if not texts:
        return True
    high = np.concatenate([[0], np.cumsum(data >= 0x80)])
    for starts, stops in texts:
        for k in np.flatnonzero(high[stops] > high[starts]).tolist():
            try:
                joined[starts[k] : stops[k]].decode()
            except UnicodeDecodeError:
                return False
    return True


def _varints(
    data: np.ndarray, pos: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The zigzag varint at each ``pos`` (as Avro's int and long), and its size in bytes."""
    value = np.zeros(len(pos), dtype=np.uint64)
    size = np.zeros(len(pos), dtype=np.int64)
    more = np.ones(len(pos), dtype=bool)
    if not len(pos):
        return value.astype(np.int64), size
    for k in range(10):
        at = pos + k
        if (at[more] >= ends[more]).any():
            return None
        byte = data[np.where(more, at, 0)].astype(np.uint64)
        value |= np.where(more, (byte & np.uint64(0x7F)) << np.uint64(7 * k), np.uint64(0))
        size += more
        more &= byte >= 0x80
        if not more.any():
            break
    else:
        return None
    signed = (value >> np.uint64(1)).astype(np.int64) ^ -(value & np.uint64(1)).astype(np.int64)
    return signed, size
