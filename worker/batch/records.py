"""The records a batch reads and writes, and dead letters.

No Kafka here: :class:`InRecord` is what the pipeline reads of a consumed record (every
transport adapter's records fit it), :class:`OutRecord` what it hands the sink, and
:class:`Outgoing` all that one batch publishes (what a delivery guarantee sends).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = [
    "InRecord",
    "OutRecord",
    "Outgoing",
    "dead_letter",
    "event_times",
    "reason_of",
    "source_of",
]


class InRecord(Protocol):
    """What the pipeline reads of a consumed record (kafka-python's ConsumerRecord fits)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    # ``timestamp``: the record's Kafka timestamp (CreateTime or LogAppendTime, as the topic
    # keeps it) in ms since the epoch, -1 when it has none (kafka-python's convention). Every
    # transport's records carry it; a record built from a file (``streamfuse replay``) may not,
    # so it is read with a default (:func:`event_times`) rather than required here.

    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]] | None:
        """The record's headers in order (None or empty when it has none); read only when
        ``output.headers`` or ``output.trace_context`` is set (:mod:`worker.batch.headers`)."""


@dataclass(frozen=True)
class OutRecord:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass
class Outgoing:
    """What one batch publishes: ``predictions`` to the output topic, ``dead_letters`` (each
    record with the stage that rejected it, :func:`dead_letter`) to the dead-letter topic."""

    predictions: list[OutRecord] = field(default_factory=list)
    dead_letters: list[tuple[OutRecord, str]] = field(default_factory=list)


def event_times(ts: np.ndarray, records: Sequence[InRecord], index: np.ndarray) -> np.ndarray:
    """Each good event's time: its own (``ts``, or ``input.ts_field`` of a framed record) where
    it gave one, else its record's Kafka timestamp; NaN where neither is known.

    Parameters
    ----------
    ts : ndarray of shape (n_good,), float64, epoch seconds; NaN where the event gave none
    records : the whole batch, length n_records
    index : ndarray of shape (n_good,), the good events' positions in ``records``

    Returns
    -------
    ndarray of shape (n_good,), float64, epoch seconds
    """
    missing = np.isnan(ts)
    if not missing.any():
        return ts
    at = index[missing].tolist()
    ms = np.fromiter(
        (getattr(records[i], "timestamp", -1) for i in at), dtype=np.float64, count=len(at)
    )
    ms[ms < 0] = np.nan
    filled = ts.copy()
    filled[missing] = ms / 1000.0
    return filled


def source_of(record: InRecord) -> bytes:
    return f"{record.topic}:{record.partition}:{record.offset}".encode()


def dead_letter(
    record: InRecord, stage: str, reason: str, max_bytes: int = 900_000
) -> tuple[OutRecord, str]:
    """The original bytes and key, with the reason, stage and source in headers.

    A value over ``max_bytes`` (the dead-letter topic could not take it) is cut to that size and
    the headers say so, with its original size: it is never dropped.
    """
    value = record.value or b""
    headers = [
        ("streamfuse.error", reason.encode("utf-8", "replace")[:1000]),
        ("streamfuse.stage", stage.encode()),
        ("streamfuse.source", source_of(record)),
    ]
    if len(value) >= 5 and value[0] == 0:  # Confluent-framed: its writer schema, for a replay
        headers.append(("streamfuse.schema_id", str(int.from_bytes(value[1:5], "big")).encode()))
    if len(value) > max_bytes:
        headers.append(("streamfuse.truncated", str(len(value)).encode()))
        value = value[:max_bytes]
    return OutRecord(record.key, value, headers), stage


def reason_of(record: OutRecord) -> str:
    """The reason a :func:`dead_letter` record gives in its ``streamfuse.error`` header."""
    for name, value in record.headers:
        if name == "streamfuse.error":
            return value.decode("utf-8", "replace")
    return ""
