"""``at_least_once``: send, flush, check every send, then commit the batch's offsets.

Commits are asynchronous: offsets only grow, so the next commit covers a failed one, and the
request reaches the coordinator ahead of any rejoin (a sync commit costs a round trip per
batch). Rebalances and shutdown commit what is held synchronously (:meth:`commit_pending`).
A failed send commits nothing: the batch is re-read from its first offsets, so nothing
unpublished is ever committed (duplicates are possible after a crash). A flush that does not
return within its deadline (:mod:`worker.transport.deadline`) is named and counted, the producer
replaced, and the batch re-read from its first offsets the same way; so is a producer whose
deliveries fail ``FAILURES_BEFORE_REPLACING`` times in a row.
"""

from __future__ import annotations

import logging

from worker.batch.records import Outgoing
from worker.config import TopicsSettings
from worker.delivery.base import (
    Backoff,
    Batch,
    Outcome,
    call_stuck,
    replace_producer,
    send_outgoing,
)
from worker.errors import KafkaCallStuckError, TransportError
from worker.metrics import Metrics
from worker.transport import GroupToken, Offsets, Sink, Source

__all__ = ["AtLeastOnce"]

log = logging.getLogger("streamfuse.delivery")


# Failed deliveries in a row after which the producer is replaced (each waits kafka.watchdog_s).
FAILURES_BEFORE_REPLACING = 2


class AtLeastOnce:
    def __init__(
        self,
        source: Source,
        sink: Sink,
        topics: TopicsSettings,
        watchdog_s: float,
        metrics: Metrics | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.source = source
        self.sink = sink
        self.topics = topics
        self.watchdog_s = watchdog_s
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self._to_commit: Offsets = {}
        self._failed_in_a_row = 0  # deliveries that failed since the last one that did not

    rebalance_rewind = Outcome.RETRY_FROM_FIRST  # every delivered batch was committed

    def membership(self) -> GroupToken | None:
        return None

    def vouch(self, before: GroupToken | None) -> tuple[bool, GroupToken | None]:
        return True, None

    def deliver(self, batch: Batch, outgoing: Outgoing) -> Outcome:
        try:
            send_outgoing(self.sink, self.topics, outgoing)
            self.sink.flush(self.watchdog_s)
        except KafkaCallStuckError as exc:
            call_stuck(exc, self.metrics, "replacing the producer and re-reading the batch")
            replace_producer(self.sink, self.backoff)
            return Outcome.RETRY_FROM_FIRST
        except TransportError as exc:
            log.error("publishing a batch failed (%s); re-reading it from its first offsets", exc)
            self._failed_in_a_row += 1
            if self._failed_in_a_row >= FAILURES_BEFORE_REPLACING:
                # A producer that delivers nothing while the brokers answer again (librdkafka
                # after a broker restart, its leader missing from the producer's cache) stays
                # that way: a new one is built (its records, if they ever leave, are re-sent
                # ones: at_least_once).
                log.warning(
                    "%d batches in a row not delivered: replacing the producer",
                    self._failed_in_a_row,
                )
                replace_producer(self.sink, self.backoff)
                self._failed_in_a_row = 0
            return Outcome.RETRY_FROM_FIRST
        self._failed_in_a_row = 0
        offsets = batch.next_offsets()
        self._to_commit.update(offsets)
        try:
            self.source.commit(offsets, wait=False)
        except TransportError as exc:  # kept in _to_commit: a later commit covers it
            log.warning("an offset commit failed (%s); the next commit covers it", exc)
        return Outcome.DELIVERED

    def due_in(self) -> float:
        return float("inf")

    def tick(self) -> Outcome | None:
        return None

    def abort_pending(self) -> None:
        self._to_commit.clear()  # lost partitions: another member commits them now

    def commit_pending(self) -> None:
        if not self._to_commit:
            return
        assigned = self.source.assignment()
        offsets = {tp: o for tp, o in self._to_commit.items() if tp in assigned}
        self._to_commit.clear()
        if not offsets:
            return
        try:
            self.source.commit(offsets, wait=True)
        except KafkaCallStuckError as exc:
            call_stuck(exc, self.metrics, "the offsets will be read again")
        except TransportError as exc:
            log.error("committing offsets failed (%s); they will be read again", exc)
