"""The worker loop: gather a micro-batch, start its models, deliver the batch before it.

Speaks only to :mod:`worker.transport` protocols, :mod:`worker.delivery` and the pipeline, so
its tests drive it on an in-memory transport. Each turn is a handful of named steps:

1. :meth:`Loop.gather` polls up to ``batch.max_events`` records, at most ``batch.max_wait_ms``
   after the first (:class:`~worker.batch.sizing.BatchSizer`), delivering the batch in flight
   once its models are done; returns a :class:`~worker.delivery.Batch` or :class:`Interrupted`;
2. :meth:`Loop.advance` starts the new batch's models (after finishing the previous batch's,
   if they still run) and delivers the previous batch while they run.

Every poll first lets the delivery commit what is due (:meth:`Delivery.tick`: a transaction
spanning ``kafka.transaction_interval_ms``); an idle poll waits no longer than until then.

The main thread keeps polling while the models run on their own threads. A batch is only
published between polls, and ``at_least_once`` commits it before the next poll, so a rebalance
(which happens inside a poll) never revokes published, uncommitted work: after one, and after a
failed delivery, every unpublished batch is dropped and its partitions rewound (to the
committed offsets after an aborted transaction; a consumer that cannot read them is rebuilt).
Every turn and poll beats a :class:`~worker.service.health.Heartbeat`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.batch.records import InRecord
from worker.batch.sizing import BatchSizer
from worker.config import BatchSettings
from worker.delivery import Backoff, Batch, Delivery, Outcome
from worker.errors import TransportError
from worker.inference.pipeline import BatchResult, InFlight, Pipeline
from worker.service.health import Heartbeat
from worker.service.tracing import BatchTracer
from worker.transport import AssignmentChange, Offsets, Source, Span, TopicPartition, merge_span

__all__ = ["IDLE_POLL_S", "Interrupted", "Loop", "Ready", "Running"]

log = logging.getLogger("streamfuse.worker")

IDLE_POLL_S = 0.2  # longest poll with nothing gathered: stay responsive to signals, reloads
FLIGHT_WAIT_S = 0.02  # while a batch is in flight: wait up to this long for its models, then poll
POLL_RETRY_S = 0.5  # after a poll that raised with nothing gathered
COMMITTED_TRIES = 3  # failed reads of the committed offsets before the consumer is rebuilt


class Interrupted(enum.Enum):
    """Why :meth:`Loop.gather` returned no batch."""

    NOTHING = "nothing to read"
    REBALANCED = "the assignment changed; unpublished batches were dropped"
    DELIVERY_FAILED = "delivering the batch in flight failed; unpublished batches were dropped"
    UNSTABLE = "read while the group rebalanced; rewound"
    STOPPED = "asked to stop"


@dataclass(frozen=True)
class Running:
    """A batch whose models run (or are done, not yet combined): the pipeline's ``flight``."""

    batch: Batch
    flight: InFlight


@dataclass(frozen=True)
class Ready:
    """A batch combined and encoded, not yet delivered: ``outgoing`` is what it publishes."""

    batch: Batch
    outgoing: BatchResult


class Loop:
    """The batch state machine of one worker.

    ``running``: the batch whose models run; ``ready``: the batch waiting to be delivered.
    Callbacks: ``between_batches`` (hot reload, labels) before each gather, ``assigned`` with
    the whole assignment after a rebalance, ``delivered`` with each published batch and what it
    produced, ``failed`` with the outcome of each batch not delivered (before it is re-read).
    ``heartbeat`` is beaten on every turn and poll (with failed polls and deliveries).
    ``stop_event`` (the backoff's unless given) ends the loop after the current batch, which
    is delivered: :meth:`stop` sets it. ``rebuild``: a new consumer.
    """

    def __init__(
        self,
        batch: BatchSettings,
        pipeline: Pipeline,
        source: Source,
        delivery: Delivery,
        backoff: Backoff,
        between_batches: Callable[[], None] = lambda: None,
        assigned: Callable[[Sequence[TopicPartition]], None] = lambda tps: None,
        delivered: Callable[[Batch, BatchResult], None] = lambda batch, result: None,
        heartbeat: Heartbeat | None = None,
        failed: Callable[[Outcome], None] = lambda outcome: None,
        stop_event: threading.Event | None = None,
        tracer: BatchTracer | None = None,
        rebuild: Callable[[], None] | None = None,
    ) -> None:
        self.settings = batch
        self.pipeline = pipeline
        self.source = source
        self.delivery = delivery
        self.backoff = backoff
        self.between_batches = between_batches
        self.assigned = assigned
        self.delivered = delivered
        self.heartbeat = heartbeat or Heartbeat()
        self.failed = failed
        self.stop_event = stop_event if stop_event is not None else backoff.stop_event
        self.tracer = tracer  # tracing.otlp_endpoint: a span per batch (None: off)
        self.rebuild = rebuild
        self.sizer = BatchSizer(**batch.model_dump())  # each batch's size and wait
        self.running: Running | None = None
        self.ready: Ready | None = None
        self.n_delivered = 0

    def stop(self) -> None:
        self.stop_event.set()

    def close(self) -> None:
        """Commit what is held back; export the last spans (``tracer``)."""
        self.delivery.commit_pending()
        if self.tracer is not None:
            self.tracer.shutdown()

    def run(self, max_batches: int | None = None) -> None:
        """Gather, predict and deliver until stopped (or ``max_batches`` are delivered)."""
        while not self.stop_event.is_set() and (
            max_batches is None or self.n_delivered < max_batches
        ):
            self.heartbeat.beat()
            self.between_batches()
            changes = self.source.changes()  # noticed between polls
            if changes:
                self.rebalanced(changes, {})
            batch = self.gather()
            if isinstance(batch, Batch):
                self.advance(batch)
        self.drain()

    # -- the steps ---------------------------------------------------------------------------

    def gather(self) -> Batch | Interrupted:  # noqa: C901 (the loop's one waiting point: every way a gather ends is here)
        """The next batch's records, delivering the batch in flight meanwhile.

        While a batch is in flight, each turn takes what is already fetched, then waits for its
        models (up to the new batch's deadline): frequent polls slow the models down (each
        kafka-python poll hands work to its I/O thread several times over). With
        ``batch.start_when_idle`` what was gathered becomes a batch once the models are free.
        """
        s, limit, max_wait = self.settings, self.sizer.limit(), self.sizer.wait_s()
        records: list[InRecord] = []
        span: Span = {}
        started = deadline = 0.0
        before = self.delivery.membership()  # exactly_once: taken before the first poll
        while len(records) < limit and not self.stop_event.is_set():
            self.heartbeat.beat()
            changes = self.source.changes()
            if changes:  # the client may rebalance between polls too
                return self.rebalanced(changes, span)
            outcome = self.deliver_if_done() or self.delivery.tick()  # None: nothing delivered
            if outcome not in (None, Outcome.DELIVERED):
                return self.delivery_failed(outcome, span)
            timeout = (
                max(0.0, deadline - time.monotonic())
                if records
                else min(IDLE_POLL_S, self.delivery.due_in())
            )
            try:
                polled = self.source.poll(
                    0.0 if self.running is not None else timeout, limit - len(records)
                )
            except TransportError as exc:  # the broker went away: the client reconnects
                log.warning("%s; retrying", exc)
                self.heartbeat.polled(str(exc))
                if records:
                    break  # what was read is still good
                self.backoff.wait(POLL_RETRY_S)
                continue
            self.heartbeat.polled()
            merge_span(span, polled.span)
            changes = self.source.changes()
            if changes:  # rewind to everything gathered so far, this poll's records included
                return self.rebalanced(changes, span)
            records.extend(polled.records)
            if records and not started:
                started = time.perf_counter()
                deadline = time.monotonic() + max_wait
                timeout = min(timeout, max_wait)
            if len(records) >= limit or (records and time.monotonic() >= deadline):
                break
            if self.running is not None:
                # Leave the CPU to the models (waiting releases the GIL); deliver next turn.
                self.pipeline.wait(self.running.flight, min(timeout, FLIGHT_WAIT_S))
            elif not records or (s.start_when_idle and self.ready is None):
                break  # nothing to read, or the models are free: start now
        if not records:
            return Interrupted.STOPPED if self.stop_event.is_set() else Interrupted.NOTHING
        vouched, token = self.delivery.vouch(before)
        if not vouched:
            log.info("re-reading a batch of %d read while the group rebalanced", len(records))
            self.seek_or_rewind(_first_offsets(span))
            return Interrupted.UNSTABLE
        return Batch(records, span, started, token)

    def advance(self, batch: Batch) -> None:
        """Start ``batch``'s models; deliver the batch before it while they run."""
        if self.running is not None:  # its models are still running: wait for them
            assert self.ready is None  # gather delivers before it polls
            self.ready, self.running = self.finish(self.running), None
        self.running = Running(batch, self.pipeline.start(batch.records, batch.started))
        if self.tracer is not None:
            self.tracer.begin(batch, self.running.flight.result)
        outcome = self.deliver_ready()
        if outcome not in (None, Outcome.DELIVERED):
            self.delivery_failed(outcome, {})

    def drain(self) -> None:
        """On stop: deliver the batch that is ready, or else the one whose models run."""
        if self.running is not None and self.ready is None:
            self.ready, self.running = self.finish(self.running), None
        self.deliver_ready()

    # -- helpers -----------------------------------------------------------------------------

    def finish(self, running: Running) -> Ready:
        """Wait for the running batch's models, then combine and encode it (timed: the sizer)."""
        result = self.pipeline.finish(running.flight)
        self.sizer.observe(running.batch.n_records, time.perf_counter() - running.flight.begun)
        return Ready(running.batch, result)

    def deliver_if_done(self) -> Outcome | None:
        """Deliver the batch in flight if its models are done (None: nothing was delivered)."""
        if self.ready is None:
            running = self.running
            if running is None or not self.pipeline.wait(running.flight, 0):
                return None
            self.ready, self.running = self.finish(running), None
        return self.deliver_ready()

    def deliver_ready(self) -> Outcome | None:
        ready = self.ready
        if ready is None:
            return None
        outcome = self.delivery.deliver(ready.batch, ready.outgoing)
        self.heartbeat.delivered(None if outcome is Outcome.DELIVERED else outcome.value)
        if self.tracer is not None:
            self.tracer.end(ready.outgoing, outcome.value)
        if outcome is Outcome.DELIVERED:
            self.ready = None
            self.backoff.reset()
            self.n_delivered += 1
            self.delivered(ready.batch, ready.outgoing)
        else:
            self.failed(outcome)
            self.backoff.wait()
        return outcome

    def rebalanced(self, changes: list[AssignmentChange], gathering: Span) -> Interrupted:
        """Drop every unpublished batch (records of revoked partitions must not be published by
        this worker now), rewinding the partitions still held; follow the new assignment."""
        assignments = [c.assignment for c in changes if c.assignment is not None]
        if assignments:
            self.assigned(assignments[-1])
        if n_unsent := self.n_unsent():
            log.info("dropping %d unsent events after a rebalance", n_unsent)
        self.discard_unsent(gathering, self.delivery.rebalance_rewind)
        return Interrupted.REBALANCED

    def revoke_all(self, reset: Callable[[], None]) -> None:
        """The consumer is reset (``reset``: rejoin, or a new consumer) as if every partition
        were revoked: unpublished batches dropped, the open transaction aborted, offsets held
        back forgotten; what the group assigns next is read from its committed offsets."""
        if n_unsent := self.n_unsent():
            log.info("dropping %d unsent events before resetting the consumer", n_unsent)
        self.discard_unsent({}, Outcome.RETRY_FROM_FIRST)
        self.delivery.abort_pending()
        reset()

    def n_unsent(self) -> int:
        """Events read into batches that are running or ready (not yet published)."""
        return sum(held.batch.n_records for held in (self.running, self.ready) if held is not None)

    def delivery_failed(self, outcome: Outcome, gathering: Span) -> Interrupted:
        self.discard_unsent(gathering, outcome)
        return Interrupted.DELIVERY_FAILED

    def discard_unsent(self, gathering: Span, rewind: Outcome) -> None:
        """Drop every batch not yet published and rewind so that it is read again: to each
        partition's first unpublished offset, or (after an aborted transaction) to the
        committed offsets, which come before all of them."""
        spans = [gathering]
        dropped: list[BatchResult] = []
        if self.running is not None:  # let its models finish; the result is dropped
            dropped.append(self.pipeline.finish(self.running.flight))
            spans.append(self.running.batch.span)
        if self.ready is not None:
            dropped.append(self.ready.outgoing)
            spans.append(self.ready.batch.span)
        if self.tracer is not None:
            for result in dropped:
                self.tracer.end(result, "dropped")
        self.running = self.ready = None
        if rewind is Outcome.RETRY_FROM_COMMITTED:
            self.rewind_to_committed()
        else:
            self.seek_or_rewind(_first_offsets(*spans))

    def seek_or_rewind(self, offsets: Offsets) -> None:
        """Back to ``offsets``; a seek the client refuses falls back to the committed offsets,
        which come before them (re-read, never skipped)."""
        try:
            self.source.seek(offsets)
        except TransportError as exc:
            log.warning("seek refused (%s): re-reading from the committed offsets", exc)
            self.rewind_to_committed()

    def rewind_to_committed(self) -> None:
        """Retried with backoff (a position past the committed offset would skip events); an open
        transaction is aborted first, as what it holds is read again. ``COMMITTED_TRIES`` failed
        reads rebuild the consumer."""
        self.delivery.abort_pending()
        tries = 0
        while not self.stop_event.is_set():
            tries += 1
            try:
                return self.source.seek_to_committed()
            except TransportError as exc:
                if self.rebuild is not None and tries >= COMMITTED_TRIES:
                    log.error("%s, %d times in a row: building a new consumer", exc, tries)
                    return self.revoke_all(self.rebuild)
                log.warning("%s; retrying", exc)
                self.backoff.wait()


def _first_offsets(*spans: Span) -> Offsets:
    """Each partition's first offset in any of ``spans``."""
    first: Offsets = {}
    for span in spans:
        for tp, (offset, _) in span.items():
            first[tp] = min(offset, first.get(tp, offset))
    return first
