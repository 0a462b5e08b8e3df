"""``exactly_once``: one transaction per batch, with the offsets of the membership it was read in.

Each batch is read under one stable group membership, taken before its first poll and checked
again after its last (kafka-python sets a new generation at the JoinGroup answer, before the new
assignment is known): the transaction carries that membership's group metadata, so the
coordinator fences it if the group has rebalanced since (KIP-447). A batch without such a
token is re-read, never vouched for by the current membership. An aborted transaction re-reads
from the committed offsets; a stuck producer is replaced (the new one, with the same
transactional id, fences it and aborts its open transaction), and so is a producer fenced
on a transaction older than its timeout (the coordinator aborted it for its age); any other
fence means another instance owns the transactional id, and ends the worker.

Both clients take the same path, through the sink's transaction steps (begin, send offsets,
commit, abort). With ``kafka.transaction_interval_ms`` at 0 the transaction commits as soon as
its one batch was sent. Above 0 (confluent-kafka only) one transaction spans the batches of
that interval, as Kafka Streams' commit interval does: each batch's records are sent into the
open transaction and its offsets added up; the transaction commits once it is that
old (checked on every loop turn, :meth:`ExactlyOnce.tick`), before a rebalance revokes
partitions (:meth:`ExactlyOnce.commit_pending`, which librdkafka runs inside ``consume``) and
at shutdown. A failure aborts all of its batches and re-reads from the committed offsets, and
so does every rebalance (:attr:`ExactlyOnce.rebalance_rewind`). With kafka-python, whose
rebalance hand-off runs on another thread, the same design saw 316 to 662 events published
twice in the rebalance fault test (docs/guarantees.md, "Delivery").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
from worker.errors import (
    KafkaCallStuckError,
    ProducerFencedError,
    ProducerStuckError,
    TransactionAbortedError,
    TransportError,
)
from worker.metrics import Metrics
from worker.transport import GroupToken, Offsets, Sink, Source

__all__ = ["ExactlyOnce"]

log = logging.getLogger("streamfuse.delivery")


@dataclass
class _Open:
    """The transaction spanning batches: its membership, start, and the offsets it commits."""

    token: GroupToken
    began: float
    offsets: Offsets = field(default_factory=dict)
    n_batches: int = 0


class ExactlyOnce:
    def __init__(
        self,
        source: Source,
        sink: Sink,
        topics: TopicsSettings,
        watchdog_s: float,
        metrics: Metrics,
        backoff: Backoff,
        transaction_timeout_s: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = 0.0,
    ) -> None:
        self.source = source
        self.sink = sink
        self.topics = topics
        self.watchdog_s = watchdog_s
        self.metrics = metrics
        self.backoff = backoff
        self.transaction_timeout_s = transaction_timeout_s
        self.clock = clock
        self.interval_s = interval_s
        self._open: _Open | None = None
        if interval_s:  # the open transaction commits before partitions are revoked
            source.before_revoke(self.commit_pending, self.abort_pending)

    @property
    def rebalance_rewind(self) -> Outcome:
        """Where the loop rewinds after a rebalance: to the committed offsets when delivered
        batches may still be in an open transaction (which was committed or aborted by then)."""
        return Outcome.RETRY_FROM_COMMITTED if self.interval_s else Outcome.RETRY_FROM_FIRST

    def membership(self) -> GroupToken | None:
        return self.source.group_token()

    def vouch(self, before: GroupToken | None) -> tuple[bool, GroupToken | None]:
        after = self.source.group_token()
        if before is None:  # joined during this batch
            before = after
        return before is not None and before == after, before

    def deliver(self, batch: Batch, outgoing: Outgoing) -> Outcome:
        """Raises :class:`worker.errors.ProducerFencedError` when fenced by another instance.

        A fence on a transaction open longer than ``kafka.transaction_timeout_ms`` is the
        coordinator's own: it aborts a transaction that old (a broker outage outlasting the
        timeout) and bumps the producer's epoch, which fences this producer as a new instance
        would. That one is replaced like a stuck producer and the batch re-read from committed;
        a fence on a younger transaction can only come from another instance, and is fatal.
        """
        if batch.token is None:
            log.info("re-reading a batch of %d read with no stable membership", batch.n_records)
            return Outcome.RETRY_FROM_FIRST
        sink = self.sink
        opened = self._open
        if opened is not None and opened.token != batch.token:  # not seen by a revoke yet
            outcome = self._commit_open()
            if outcome is not Outcome.DELIVERED:
                return outcome
            opened = None
        if opened is None:
            try:
                sink.begin_transaction()
            except ProducerStuckError as exc:  # unusable (a fatal error): nothing begun
                log.error("%s; replacing the producer and re-reading the batch", exc)
                self._replace_producer()
                return Outcome.RETRY_FROM_FIRST
            except TransportError as exc:  # nothing begun: read this batch again
                log.error("%s; re-reading the batch", exc)
                return Outcome.RETRY_FROM_FIRST
            opened = self._open = _Open(batch.token, self.clock())
        try:
            send_outgoing(sink, self.topics, outgoing)
        except TransportError as exc:
            self._open = None
            log.error("%s; aborting the open transaction of %d batches", exc, opened.n_batches)
            cause = exc
            return self._settled(lambda: sink.abort_transaction(cause), opened.began, aborting=True)
        opened.offsets.update(batch.next_offsets())
        opened.n_batches += 1
        if self.clock() - opened.began >= self.interval_s:  # interval 0: at once
            return self._commit_open()
        return Outcome.DELIVERED

    def _commit_open(self) -> Outcome:
        sink = self.sink
        opened, self._open = self._open, None
        if opened is None:
            return Outcome.DELIVERED

        def commit() -> None:
            sink.send_offsets_to_transaction(opened.offsets, opened.token)
            sink.commit_transaction()

        return self._settled(commit, opened.began)

    def _settled(
        self,
        call: Callable[[], None],
        began: float,
        aborting: bool = False,
        not_begun: Outcome = Outcome.RETRY_FROM_COMMITTED,
    ) -> Outcome:
        """Run a transaction's ``call`` (begun at ``began``; ``aborting``: an abort on
        purpose) and say what it means for the loop; ``not_begun``: after a bare transport
        error (no producer right now, so nothing of this call was committed)."""
        try:
            call()
        except ProducerFencedError as exc:
            open_s = self.clock() - began
            if open_s < self.transaction_timeout_s:
                raise
            log.error(
                "%s after the transaction had been open %.1f s, longer than"
                " kafka.transaction_timeout_ms: the coordinator aborted it for its age;"
                " replacing the producer and re-reading from committed",
                exc,
                open_s,
            )
            return self._aborted(replace=True)
        except KafkaCallStuckError as exc:
            call_stuck(exc, self.metrics, "replacing the producer and re-reading from committed")
            return self._aborted(replace=True)
        except ProducerStuckError as exc:
            log.error("%s; replacing the producer and re-reading from committed", exc)
            return self._aborted(replace=True)
        except TransactionAbortedError as exc:
            log.error("%s; aborted, re-reading from committed", exc)
            return self._aborted(replace=False)
        except TransportError as exc:
            log.error("%s; re-reading", exc)
            return not_begun
        if aborting:
            return self._aborted(replace=False)
        self.metrics.transactions_committed.inc()
        return Outcome.DELIVERED

    def _aborted(self, replace: bool) -> Outcome:
        self.metrics.transactions_aborted.inc()
        if replace:
            self._replace_producer()
        return Outcome.RETRY_FROM_COMMITTED

    def _replace_producer(self) -> None:
        """Retry until a new producer is ready (or the worker is asked to stop); the new one's
        ``init_transactions`` fences the old one, whose open transaction is aborted."""
        replace_producer(self.sink, self.backoff)

    def due_in(self) -> float:
        """Seconds until the open transaction is due to commit (inf: none is open)."""
        if self._open is None:
            return float("inf")
        return max(0.0, self._open.began + self.interval_s - self.clock())

    def tick(self) -> Outcome | None:
        """On every loop turn: commit the open transaction once it is due (None: nothing to
        do)."""
        if self._open is None or self.due_in() > 0:
            return None
        return self._commit_open()

    def commit_pending(self) -> None:
        """Before partitions are revoked and at shutdown: commit the open transaction (each
        batch's own transaction, without an interval, committed its offsets already)."""
        if self._open is not None:
            n = self._open.n_batches
            outcome = self._commit_open()
            if outcome is not Outcome.DELIVERED:
                log.warning("the open transaction of %d batches was aborted; re-read", n)

    def abort_pending(self) -> None:
        """Partitions were lost (the session expired): abort the open transaction, whose
        offsets another member may own now."""
        opened, self._open = self._open, None
        if opened is not None:
            cause = TransactionAbortedError("partitions lost")
            self._settled(lambda: self.sink.abort_transaction(cause), opened.began, aborting=True)
