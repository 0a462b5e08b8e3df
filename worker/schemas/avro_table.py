"""Read the columns a prediction needs straight from a group's Avro bytes, with numpy.

For writer schemas whose records hold only ``double``, ``float``, ``int``, ``long`` and
``string`` fields (nested records of them too), every field sits at an offset that numpy can
compute for all records at once: fixed-width numbers are gathered from the joined payloads,
varints (ints, longs, string lengths) decoded a byte position at a time over the whole group.
No Python object is built per record but the id. Any other schema, or any record that does not
read cleanly (too short, bad UTF-8, a varint over 10 bytes), returns None and the group is
decoded by fastavro as before, so what a record decodes to, or why it cannot, is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AvroTable"]

_WIDTH = {"double": 8, "float": 4}
_DTYPE = {"double": "<f8", "float": "<f4"}
_VARINT = {"int", "long"}
Columns = tuple[np.ndarray, list[Any], np.ndarray]


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
    """The record's leaves in order (dotted path, Avro type), and which of them to read."""

    steps: tuple[tuple[str, str] | _Run, ...]
    features: tuple[str, ...]
    id_field: str
    ts_field: str | None
    wanted: frozenset[str]

    @classmethod
    def plan(
        cls, schema: Any, features: Sequence[str], id_field: str, ts_field: str | None
    ) -> AvroTable | None:
        """The plan for a writer schema (its JSON, as loaded), or None if it has a type the
        plan does not read, or the fields are not all leaves of a readable type."""
        leaves = _leaves(schema, "")
        if leaves is None:
            return None
        kinds = {path: kind.strip("?") for path, kind in leaves}
        nullable = {path for path, kind in leaves if kind != kind.strip("?")}
        if id_field in nullable:
            return None  # a null id has its own reason, given record by record
        numeric = (*_WIDTH, *_VARINT)
        if any(kinds.get(p) not in numeric for p in features):
            return None
        if ts_field is not None and kinds.get(ts_field) not in numeric:
            return None
        if kinds.get(id_field) not in ("string", *_VARINT):
            return None
        wanted = frozenset([*features, id_field, *([ts_field] if ts_field else [])])
        return cls(_runs(leaves), tuple(features), id_field, ts_field, wanted)

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
        numbers, strings = scanned
        ids = self._ids(joined, numbers, strings)
        if ids is None:
            return None
        X = np.empty((n, len(self.features)), dtype=np.float64)
        for j, path in enumerate(self.features):
            X[:, j] = numbers[path]
        if self.ts_field is None:
            ts = np.full(n, np.nan)
        else:
            ts = numbers[self.ts_field].astype(np.float64)
        return X, ids, ts

    def _scan(  # noqa: C901 (one pass over the steps, each kind's bail-out inline)
        self, data: np.ndarray, pos: np.ndarray, ends: np.ndarray
    ) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]] | None:
        """Every leaf in wire order, for all records at once: the wanted numbers, and where
        the wanted strings lie; None once a record runs past its end."""
        numbers: dict[str, np.ndarray] = {}
        strings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for step in self.steps:
            if isinstance(step, _Run):
                if (pos + step.width > ends).any():
                    return None
                if self.wanted.intersection(step.paths):
                    numbers.update(self._gather(data, pos, step))
                pos = pos + step.width
                continue
            path, kind = step
            if "?" in kind:
                read = _nullable(data, pos, ends, kind)
                if read is None:
                    return None
                if path in self.wanted:
                    numbers[path] = read[0]
                pos = pos + read[1]
                continue
            read = _varints(data, pos, ends)
            if read is None:
                return None
            value, size = read
            pos = pos + size
            if kind == "string":
                if (value < 0).any() or (pos + value > ends).any():
                    return None
                if path in self.wanted:
                    strings[path] = (pos, pos + value)
                pos = pos + value
            elif path in self.wanted:
                numbers[path] = value
        return numbers, strings

    def _gather(self, data: np.ndarray, pos: np.ndarray, run: _Run) -> dict[str, np.ndarray]:
        fixed = data[pos[:, None] + np.arange(run.width)].view(run.dtype)[:, 0]
        return {
            path: fixed[f"c{k}"].astype(np.float64)
            for k, path in enumerate(run.paths)
            if path in self.wanted
        }

    def _ids(
        self,
        joined: bytes,
        numbers: dict[str, np.ndarray],
        strings: dict[str, tuple[np.ndarray, np.ndarray]],
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


def _leaves(schema: Any, prefix: str) -> list[tuple[str, str]] | None:
    """A record's leaves in wire order, or None if one has a type not read here."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    leaves: list[tuple[str, str]] = []
    for field in schema.get("fields", []):
        path = prefix + field["name"]
        kind = field["type"]
        if isinstance(kind, dict) and kind.get("type") == "record":
            inner = _leaves(kind, path + ".")
            if inner is None:
                return None
            leaves += inner
            continue
        if isinstance(kind, dict) and set(kind) == {"type"}:
            kind = kind["type"]
        if isinstance(kind, list) and len(kind) == 2 and "null" in kind:
            [inner] = [k for k in kind if k != "null"]
            if inner in (*_WIDTH, *_VARINT):
                # The null branch's side marks it: "?double" is ["null", "double"].
                leaves.append((path, f"?{inner}" if kind[0] == "null" else f"{inner}?"))
                continue
        if kind not in (*_WIDTH, *_VARINT, "string"):
            return None  # unions, enums, arrays, maps, bytes, fixed, logical types, names
        leaves.append((path, kind))
    return leaves


def _nullable(
    data: np.ndarray, pos: np.ndarray, ends: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """A ``["null", T]`` (kind ``?T``) or ``[T, "null"]`` (``T?``) union at each ``pos``: the
    branch index (one byte, 0 or 2 zigzagged), then T's value or nothing; NaN for null, as
    fastavro's None becomes in a float array."""
    if (pos >= ends).any():
        return None
    byte = data[pos]
    if not ((byte == 0) | (byte == 2)).all():
        return None
    nulls = (byte >> 1) == (0 if kind.startswith("?") else 1)
    if not nulls.any():
        read = _number(data, pos + 1, ends, kind.strip("?"))
        return None if read is None else (read[0].astype(np.float64), read[1] + 1)
    present = np.flatnonzero(~nulls)
    read = _number(data, pos[present] + 1, ends[present], kind.strip("?"))
    if read is None:
        return None
    column = np.full(len(pos), np.nan)
    column[present] = read[0]
    size = np.ones(len(pos), dtype=np.int64)
    size[present] += read[1]
    return column, size


def _number(
    data: np.ndarray, pos: np.ndarray, ends: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """The number of Avro type ``kind`` at each ``pos``, and its size in bytes."""
    if kind in _VARINT:
        return _varints(data, pos, ends)
    width = _WIDTH[kind]
    if (pos + width > ends).any():
        return None
    raw = data[pos[:, None] + np.arange(width)]
    return raw.view(_DTYPE[kind])[:, 0].astype(np.float64), np.full(len(pos), width)


def _varints(
    data: np.ndarray, pos: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The zigzag varint at each ``pos`` (as Avro's int and long), and its size in bytes."""
    value = np.zeros(len(pos), dtype=np.uint64)
    size = np.zeros(len(pos), dtype=np.int64)
    more = np.ones(len(pos), dtype=bool)
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
