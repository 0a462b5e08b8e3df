"""Delivery guarantees over the transport protocols: one object per guarantee.

:mod:`.base` (:class:`Batch`: records, offset span, start time, group token, what it publishes
being a :class:`worker.batch.records.Outgoing`; :class:`Outcome`: delivered, or re-read from
the batch's first offsets, or from the committed offsets; the :class:`Delivery` interface),
:mod:`.at_least_once` (:class:`AtLeastOnce`) and :mod:`.exactly_once` (:class:`ExactlyOnce`).
May import :mod:`worker.transport` (protocols only, never an adapter), :mod:`worker.batch`
(records), :mod:`worker.metrics`, :mod:`worker.errors`; never :mod:`worker.inference`.
"""

from __future__ import annotations

from worker.config import Settings
from worker.delivery.at_least_once import AtLeastOnce
from worker.delivery.base import Backoff, Batch, Delivery, Outcome, call_stuck
from worker.delivery.exactly_once import ExactlyOnce
from worker.metrics import Metrics
from worker.transport import Sink, Source

__all__ = [
    "AtLeastOnce",
    "Backoff",
    "Batch",
    "Delivery",
    "ExactlyOnce",
    "Outcome",
    "call_stuck",
    "delivery_for",
]


def delivery_for(
    settings: Settings, source: Source, sink: Sink, metrics: Metrics, backoff: Backoff
) -> Delivery:
    """The guarantee ``kafka.processing_guarantee`` names."""
    topics, watchdog_s = settings.topics, settings.kafka.watchdog_s
    if settings.kafka.processing_guarantee == "exactly_once":
        return ExactlyOnce(
            source,
            sink,
            topics,
            watchdog_s,
            metrics,
            backoff,
            transaction_timeout_s=settings.kafka.transaction_timeout_ms / 1000,
            interval_s=settings.kafka.transaction_interval_ms / 1000,
        )
    return AtLeastOnce(source, sink, topics, watchdog_s, metrics, backoff)
