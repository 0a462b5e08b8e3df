"""``exactly_once``: one transaction per batch, with the offsets of the membership it was read in.

Each batch is read under one stable group membership, taken before its first poll and checked
again after its last (kafka-python sets a new generation at the JoinGroup answer, before the new
assignment is known): the transaction carries that membership's group metadata, so the
coordinator fences it if the group has rebalanced since (KIP-447). A batch without such a
token is re-read, never vouched for by the current membership. An aborted transaction re-reads
from the committed offsets; a stuck producer is replaced (the new one, with the same
transactional id, fences it and aborts its open transaction); fencing ends the worker.

A transaction spanning several batches (committed every 100 ms, as Kafka Streams does) was
tried: 0.84 to 0.89 of at_least_once instead of about 0.8, but the rebalance fault test then
saw 316 to 662 events published twice under read_committed (benchmarks/README.md), so each
batch keeps its own transaction.
"""

from __future__ import annotations

import logging

from worker.config import TopicsSettings
from worker.delivery.base import Backoff, Batch, Outcome, send_result
from worker.errors import ProducerStuckError, TransactionAbortedError, TransportError
from worker.metrics import Metrics
from worker.transport import GroupToken, Sink, Source

__all__ = ["ExactlyOnce"]

log = logging.getLogger("streamfuse.delivery")


class ExactlyOnce:
    def __init__(
        self,
        source: Source,
        sink: Sink,
        topics: TopicsSettings,
        watchdog_s: float,
        metrics: Metrics,
        backoff: Backoff,
    ) -> None:
        self.source = source
        self.sink = sink
        self.topics = topics
        self.watchdog_s = watchdog_s
        self.metrics = metrics
        self.backoff = backoff

    def membership(self) -> GroupToken | None:
        return self.source.group_token()

    def vouch(self, before: GroupToken | None) -> tuple[bool, GroupToken | None]:
        after = self.source.group_token()
        if before is None:  # joined during this batch
            before = after
        return before is not None and before == after, before

    def deliver(self, batch: Batch) -> Outcome:
        """Raises :class:`worker.errors.ProducerFencedError` when fenced (fatal)."""
        assert batch.result is not None
        if batch.token is None:
            log.info("re-reading a batch of %d read with no stable membership", batch.n_records)
            return Outcome.RETRY_FROM_FIRST
        try:
            with self.sink.transaction(batch.next_offsets(), batch.token):
                send_result(self.sink, self.topics, batch.result)
        except ProducerStuckError as exc:
            log.error("%s; replacing the producer and re-reading from committed", exc)
            self.metrics.transactions_aborted.inc()
            self._replace_producer()
            return Outcome.RETRY_FROM_COMMITTED
        except TransactionAbortedError as exc:
            log.error("%s; aborted, re-reading from committed", exc)
            self.metrics.transactions_aborted.inc()
            return Outcome.RETRY_FROM_COMMITTED
        except TransportError as exc:  # no transaction was begun (no producer right now)
            log.error("%s; re-reading the batch", exc)
            return Outcome.RETRY_FROM_FIRST
        self.metrics.transactions_committed.inc()
        return Outcome.DELIVERED

    def _replace_producer(self) -> None:
        """Retry until a new producer is ready (or the worker is asked to stop)."""
        while not self.backoff.stopping:
            try:
                self.sink.replace()
                log.info("producer replaced")
                return
            except TransportError as exc:
                log.warning("%s", exc)
                self.backoff.wait()

    def commit_pending(self) -> None:
        """Nothing to do: each transaction committed its own offsets."""
