"""The batch the loop delivers, the outcome of delivering it, and the guarantee interface.

A delivery sees a batch as it was read (:class:`Batch`) and what it publishes
(:class:`worker.batch.records.Outgoing`), never the pipeline that produced it.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from worker.batch.records import InRecord, Outgoing
from worker.config import TopicsSettings
from worker.errors import KafkaCallStuckError, TransportError
from worker.metrics import Metrics
from worker.transport import GroupToken, Offsets, Sink, Span

__all__ = [
    "Backoff",
    "Batch",
    "Delivery",
    "Outcome",
    "call_stuck",
    "replace_producer",
    "send_outgoing",
]

log = logging.getLogger("streamfuse.delivery")


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY_FROM_FIRST = "retry from the batch's first offsets"  # nothing was committed
    RETRY_FROM_COMMITTED = "retry from the committed offsets"  # a transaction was aborted


@dataclass(frozen=True)
class Batch:
    """One micro-batch as it was read: its records, each partition's offset span, when its first
    record came (``time.perf_counter``) and, under exactly_once, the group membership it was
    read under (``token``; None: no stable one)."""

    records: list[InRecord]
    span: Span
    started: float
    token: GroupToken | None

    @property
    def n_records(self) -> int:
        return len(self.records)

    def next_offsets(self) -> Offsets:
        """What committing this batch stores: each partition's last offset plus one."""
        return {tp: last + 1 for tp, (_, last) in self.span.items()}


def send_outgoing(sink: Sink, topics: TopicsSettings, outgoing: Outgoing) -> None:
    """Queue a batch's predictions and dead letters on ``sink``."""
    if outgoing.predictions:
        sink.send(topics.output, outgoing.predictions)
    if outgoing.dead_letters:
        sink.send(topics.dead_letter, [record for record, _ in outgoing.dead_letters])


def call_stuck(exc: KafkaCallStuckError, metrics: Metrics | None, then: str) -> None:
    """Name a Kafka call that passed its deadline: a WARNING (``then``: what is done about it)
    and ``streamfuse_kafka_call_stuck_total{call}``."""
    log.warning("stuck: %s; %s", exc, then)
    if metrics is not None:
        metrics.kafka_call_stuck.labels(call=exc.call).inc()


def replace_producer(sink: Sink, backoff: Backoff) -> None:
    """Retry until a new producer is ready (or the worker is asked to stop)."""
    while not backoff.stop_event.is_set():
        try:
            sink.replace()
            log.info("producer replaced")
            return
        except TransportError as exc:
            log.warning("%s", exc)
            backoff.wait()


class Backoff:
    """Waits between retries of a failing step: 0.1 s doubling up to 5 s, cut short when
    ``stop_event`` is set (a stop request must not wait out a backoff; the event is the
    process's stop signal, owned by whoever stops it). ``on_wait`` runs before each wait (the
    worker's heartbeat: a loop retrying against a lost broker is alive)."""

    def __init__(
        self,
        stop_event: threading.Event | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self._failures = 0
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self._on_wait = on_wait

    def wait(self, seconds: float | None = None) -> None:
        """Wait ``seconds``, or the next backoff step when not given."""
        if seconds is None:
            self._failures += 1
            seconds = min(5.0, 0.1 * 2 ** (self._failures - 1))
        if self._on_wait is not None:
            self._on_wait()
        self.stop_event.wait(seconds)

    def reset(self) -> None:
        self._failures = 0


class Delivery(Protocol):
    """A processing guarantee: how a batch is vouched for, published and committed."""

    @property
    def rebalance_rewind(self) -> Outcome:
        """Where the loop rewinds the partitions it still holds after a rebalance."""

    def membership(self) -> GroupToken | None:
        """Taken before a batch's first poll: the membership it is read under (or None)."""

    def vouch(self, before: GroupToken | None) -> tuple[bool, GroupToken | None]:
        """After a batch's last poll: whether its records may be delivered, and the token to
        deliver them with (exactly_once: the same stable membership before and after)."""

    def deliver(self, batch: Batch, outgoing: Outgoing) -> Outcome:
        """Publish ``outgoing`` (what ``batch`` produced) and commit ``batch``'s offsets, or
        say how to retry."""

    def due_in(self) -> float:
        """Seconds until :meth:`tick` has work (inf: none pending); bounds the loop's idle poll."""

    def tick(self) -> Outcome | None:
        """On every loop turn: commit what is due (None: nothing was due)."""

    def commit_pending(self) -> None:
        """Before a rebalance completes and at shutdown: commit, waiting, what was published."""

    def abort_pending(self) -> None:
        """Partitions were lost: drop what was published but not committed."""
