"""Decode a batch that may mix Confluent-framed records (Avro, Protobuf, JSON Schema) with
plain JSON events, into one :class:`~worker.batch.decode.DecodedBatch`.

Framed records (first byte 0) are grouped by their writer schema; each group is checked once
against the features the models need (a field missing or not numeric dead-letters the group,
naming the field), decoded by its format's own decoder, and its features gathered by one
C-level getter per record and checked as one array. The plain records take the JSON path of
:func:`~worker.batch.decode.decode_batch` unchanged. No network here: the writer schemas come
from a :class:`ReaderSource` (:mod:`worker.schemas` over a Schema Registry).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import numpy as np

from worker.batch.decode import MAX_ID_CHARS, DecodedBatch, Rejection, Schema, decode_batch

__all__ = ["FieldMap", "Reader", "ReaderSource", "decode_mixed", "is_framed"]

MAGIC = b"\x00"
_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-f]+>")  # a decoder's message quoting its buffer


def is_framed(value: bytes | None) -> bool:
    """A Confluent-framed record: magic byte 0 (no JSON text starts with a NUL byte)."""
    return value is not None and value[:1] == MAGIC


@dataclass(frozen=True)
class FieldMap:
    """Where a framed record holds what a prediction needs: ``features`` (dotted paths, in the
    models' order), ``id_field`` and ``ts_field`` (None: no event time)."""

    features: tuple[str, ...]
    id_field: str = "id"
    ts_field: str | None = None

    @classmethod
    def for_schema(
        cls, schema: Schema, renames: dict[str, str], id_field: str, ts_field: str | None
    ) -> FieldMap:
        names = schema.feature_names or tuple(f"f{j}" for j in range(schema.n_features))
        return cls(tuple(renames.get(n, n) for n in names), id_field, ts_field)


class Reader(Protocol):
    """One writer schema: checks the fields once, decodes one record's bytes."""

    format: str  # "Avro", "Protobuf", "JSON Schema"

    def problem(self, fields: FieldMap) -> str | None:
        """Why records of this schema cannot be predicted (a field named), or None."""

    def decode(self, value: bytes) -> Any:
        """The record's object (a dict, or a Protobuf message); raises on bad bytes."""

    def decode_table(
        self, values: Sequence[bytes], fields: FieldMap
    ) -> tuple[np.ndarray, list[Any], np.ndarray] | None:
        """``(X, ids, ts)`` of every record, read without building its object, or None (the
        schema or a record does not allow it): then :meth:`decode_all`."""

    def decode_all(self, values: Sequence[bytes]) -> list[Any] | None:
        """Every record's object in one call, or None (a record failed, or the format has no
        such call): then each is decoded alone."""

    def getter(self, path: str) -> Callable[[Any], Any]:
        """Reads the field at dotted ``path`` from a decoded object."""

    def row_getter(self, paths: Sequence[str]) -> Callable[[Any], Sequence[Any]]:
        """Reads the fields at ``paths`` from a decoded object, in order."""


class ReaderSource(Protocol):
    def schema_ids(self, values: Sequence[bytes]) -> list[int | None]:
        """Each framed value's schema id (None: the framing is truncated)."""

    def readers(self, ids: set[int]) -> Mapping[int, Reader | str]:
        """A reader per id, or why there is none (an unknown id). Waits while the registry
        does not answer (raising only when asked to stop)."""


def decode_mixed(
    values: Sequence[bytes | None],
    schema: Schema,
    max_event_bytes: int,
    source: ReaderSource,
    fields: FieldMap,
) -> DecodedBatch:
    """Decode ``values``: framed records through ``source``, the rest as JSON events."""
    framed = [i for i, v in enumerate(values) if v is not None and v[:1] == MAGIC]
    if not framed:
        return decode_batch(values, schema, max_event_bytes)
    plain: list[int] = []
    if len(framed) < len(values):
        framed_set = set(framed)
        plain = [i for i in range(len(values)) if i not in framed_set]
    parts: list[DecodedBatch] = []
    if plain:
        part = decode_batch([values[i] for i in plain], schema, max_event_bytes)
        parts.append(_reindex(part, np.array(plain, dtype=np.int64)))
    rejections: list[Rejection] = []
    framed_values: list[bytes] = [values[i] for i in framed]  # type: ignore[misc]
    ids = source.schema_ids(framed_values)
    groups: dict[int, list[int]] = {}
    [one_id] = set(ids) if len(set(ids)) == 1 else [None]
    if one_id is not None and max(map(len, framed_values)) <= max_event_bytes:
        groups[one_id] = framed  # the usual batch: one writer schema, nothing oversized
        ids = []
    for i, schema_id in zip(framed, ids, strict=False):
        value = values[i]
        assert value is not None
        if schema_id is None:
            rejections.append(Rejection(i, "decode", "truncated record: no complete schema id"))
        elif len(value) > max_event_bytes:
            why = f"event is {len(value)} bytes, over the limit of {max_event_bytes}"
            rejections.append(Rejection(i, "validate", why))
        else:
            groups.setdefault(schema_id, []).append(i)
    readers = source.readers(set(groups))
    for schema_id, members in groups.items():
        reader = readers[schema_id]
        if isinstance(reader, str):
            rejections.extend(Rejection(i, "decode", reader) for i in members)
            continue
        problem = reader.problem(fields)
        if problem is not None:
            why = f"schema id {schema_id} ({reader.format}): {problem}"
            rejections.extend(Rejection(i, "validate", why) for i in members)
            continue
        part = _decode_group(values, members, reader, fields, schema_id)
        parts.append(part)
    return _merge(parts, rejections, schema)


def _decode_each(
    values: Sequence[bytes | None],
    members: list[int],
    reader: Reader,
    schema_id: int,
    rejections: list[Rejection],
) -> tuple[list[int], list[Any]]:
    """The group record by record: the decoded ones, and each other one's reason."""
    index: list[int] = []
    objects: list[Any] = []
    decode = reader.decode
    for i in members:
        try:
            objects.append(decode(values[i]))  # type: ignore[arg-type]
        except Exception as exc:  # the format's decoder: bytes it cannot read
            what = _OBJECT_REPR.sub("the payload", str(exc))
            why = f"schema id {schema_id} ({reader.format}): cannot decode: {what}"
            rejections.append(Rejection(i, "decode", why[:500]))
            continue
        index.append(i)
    return index, objects


def _decode_group(
    values: Sequence[bytes | None],
    members: list[int],
    reader: Reader,
    fields: FieldMap,
    schema_id: int,
) -> DecodedBatch:
    rejections: list[Rejection] = []
    group: list[bytes] = [values[i] for i in members]  # type: ignore[misc]
    n_features = len(fields.features)
    table = reader.decode_table(group, fields)
    if table is not None:
        return _checked(members, *table, fields, rejections)
    objects = reader.decode_all(group)
    if objects is not None:
        index = members
    else:
        index, objects = _decode_each(values, members, reader, schema_id, rejections)
    if not objects:
        return DecodedBatch(
            np.zeros(0, dtype=np.int64), [], np.zeros((0, n_features)), np.zeros(0), rejections
        )
    rows = list(map(reader.row_getter(fields.features), objects))
    try:
        X = np.array(rows, dtype=np.float64).reshape(len(objects), n_features)
    except (TypeError, ValueError) as exc:  # the schema said numbers: a decoder let one by
        why = f"schema id {schema_id} ({reader.format}): a feature is not a number: {exc}"
        rejections.extend(Rejection(i, "validate", why[:500]) for i in index)
        empty = np.zeros(0, dtype=np.int64)
        return DecodedBatch(empty, [], np.zeros((0, n_features)), np.zeros(0), rejections)
    ids = list(map(reader.getter(fields.id_field), objects))
    if not set(map(type, ids)) <= {str, int}:
        ids = [str(i) if isinstance(i, UUID) else i for i in ids]  # Avro's uuid: its text
    if fields.ts_field is not None:
        ts = _seconds(list(map(reader.getter(fields.ts_field), objects)))
    else:
        ts = np.full(len(objects), np.nan)
    return _checked(index, X, ids, ts, fields, rejections)


def _seconds(times: list[Any]) -> np.ndarray:
    """Event times as epoch seconds: numbers as they are, an aware ``datetime`` (an Avro
    ``timestamp-millis`` or ``-micros``, as fastavro gives it) by its ``timestamp()``."""
    try:
        return np.array(times, dtype=np.float64)
    except TypeError:
        return np.array(
            [t.timestamp() if isinstance(t, datetime) else t for t in times], dtype=np.float64
        )


def _checked(
    index: list[int],
    X: np.ndarray,
    ids: list[Any],
    ts: np.ndarray,
    fields: FieldMap,
    rejections: list[Rejection],
) -> DecodedBatch:
    """The group's rows whose features are finite and ids fit; the others rejected."""
    bad = ~np.isfinite(X).all(axis=1)
    keep = np.ones(len(ids), dtype=bool)
    for k in np.flatnonzero(bad).tolist():
        j = int(np.flatnonzero(~np.isfinite(X[k]))[0])
        why = f"field {fields.features[j]!r} is null or not finite"
        rejections.append(Rejection(index[k], "validate", why))
        keep[k] = False
    if not _ids_fine(ids):
        for k, doc_id in enumerate(ids):
            problem = _id_problem(doc_id, fields.id_field)
            if problem is not None and keep[k]:
                rejections.append(Rejection(index[k], "validate", problem))
                keep[k] = False
    kept = np.flatnonzero(keep)
    return DecodedBatch(
        np.array(index, dtype=np.int64)[kept],
        [ids[k] for k in kept.tolist()],
        X[kept],
        ts[kept],
        rejections,
    )


def _ids_fine(ids: list[Any]) -> bool:
    """Whether every id passes :func:`_id_problem`, by C-level passes over them."""
    types = set(map(type, ids))
    if not types <= {str, int}:
        return False
    if str not in types:
        return True
    lengths = [len(i) for i in ids if type(i) is str]
    return min(lengths) > 0 and max(lengths) <= MAX_ID_CHARS


def _id_problem(doc_id: Any, field: str) -> str | None:
    if type(doc_id) not in (str, int):
        return f"id field {field!r} must be a string or an integer, got {type(doc_id).__name__}"
    if isinstance(doc_id, str) and not 0 < len(doc_id) <= MAX_ID_CHARS:
        return f"id field {field!r} must have 1 to {MAX_ID_CHARS} characters"
    return None


def _reindex(part: DecodedBatch, positions: np.ndarray) -> DecodedBatch:
    """``part`` decoded from a subset of the batch: its positions in the whole batch."""
    rejections = [Rejection(int(positions[r.index]), r.stage, r.reason) for r in part.rejections]
    return DecodedBatch(positions[part.index], part.ids, part.X, part.ts, rejections)


def _merge(parts: list[DecodedBatch], rejections: list[Rejection], schema: Schema) -> DecodedBatch:
    """The parts in batch order; an id seen earlier in the batch is dead-lettered."""
    for part in parts:
        rejections.extend(part.rejections)
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return DecodedBatch(empty, [], np.zeros((0, schema.n_features)), np.zeros(0), rejections)
    index = np.concatenate([p.index for p in parts])
    ids = [i for p in parts for i in p.ids]
    X = np.concatenate([p.X for p in parts]).reshape(len(ids), schema.n_features)
    ts = np.concatenate([p.ts for p in parts])
    if len(parts) > 1:  # each part is in batch order already
        order = np.argsort(index, kind="stable")
        index, X, ts = index[order], X[order], ts[order]
        ids = [ids[k] for k in order.tolist()]
    if len(set(ids)) == len(ids):
        rejections.sort(key=lambda r: r.index)
        return DecodedBatch(index, ids, X, ts, rejections)
    seen: set[Any] = set()
    keep = []
    for k, doc_id in enumerate(ids):
        if doc_id in seen:
            reason = f"duplicate id {doc_id!r} in the batch"
            rejections.append(Rejection(int(index[k]), "validate", reason))
        else:
            seen.add(doc_id)
            keep.append(k)
    if len(keep) < len(ids):
        index, X, ts = index[keep], X[keep], ts[keep]
        ids = [ids[k] for k in keep]
    rejections.sort(key=lambda r: r.index)
    return DecodedBatch(index, ids, X, ts, rejections)
