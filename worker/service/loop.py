"""The worker loop: poll a micro-batch, run the pipeline, publish, then commit.

Delivery (``kafka.processing_guarantee``):

- ``at_least_once``: send every prediction and dead letter, flush, check every send's result,
  then commit the batch's offsets (asynchronously: offsets only grow, so the next commit covers
  a failed one, and the commit request reaches the coordinator ahead of any rejoin; shutdown
  commits synchronously). A failed send commits nothing and the batch is re-read from its first
  offsets, so nothing unpublished is ever committed (duplicates are possible after a crash).
- ``exactly_once``: one transaction per batch: send, ``send_offsets_to_transaction`` with the
  consumer's group metadata (of the generation the batch was read in), commit. An abortable
  error aborts and seeks back to the last committed offsets; fencing (another instance took
  over the transactional id) exits. Every transaction call runs under a watchdog.

The main thread keeps polling while the models run on their own threads (see :meth:`Worker.run`).
A batch is published only between polls, and ``at_least_once`` commits it before the next poll,
so a rebalance (which happens inside ``poll``) never revokes published, uncommitted work; the
rebalance listener only records the change. SIGTERM or SIGINT finishes the current batch,
commits, closes and returns.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import (
    InvalidProducerEpochError,
    KafkaError,
    ProducerFencedError,
    TransactionalIdAuthorizationFailedError,
)
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition
from prometheus_client import CollectorRegistry

from model_store import ModelStore, ModelStoreError
from worker.accuracy.labels import Joined, LabelJoiner
from worker.config import Settings
from worker.errors import ConfigError, DeliveryError, TransactionWatchdogError, WorkerError
from worker.inference.models import ModelSet
from worker.inference.pipeline import BatchResult, InFlight, Pipeline
from worker.inference.strategies import build_strategies, heldout_name
from worker.metrics import Metrics
from worker.service.lag import LagMonitor
from worker.transport.kafka_python import clients as kafka_io

__all__ = ["Worker"]

log = logging.getLogger("streamfuse.worker")
FATAL_TXN_ERRORS = (
    ProducerFencedError,
    InvalidProducerEpochError,
    TransactionalIdAuthorizationFailedError,
)


IDLE_POLL_MS = 200  # longest poll with nothing gathered: stay responsive to signals, reloads
FLIGHT_WAIT_MS = 20  # while a batch is in flight: wait up to this long for its models, then poll


@dataclass
class _Flight:
    """A batch whose models are running."""

    span: dict[TopicPartition, tuple[int, int]]
    inflight: InFlight
    started: float
    n_records: int
    group_metadata: Any = None


@dataclass
class _Pending:
    """A batch predicted and encoded, not yet sent."""

    span: dict[TopicPartition, tuple[int, int]]
    result: BatchResult
    started: float
    n_records: int
    group_metadata: Any = None  # exactly_once: the consumer generation it was read in


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    # kafka-python 3 calls these on its own I/O thread while poll() waits: they must not block
    # or touch the worker's batches. They only record the change; the main thread acts on it
    # as soon as poll() returns (see Worker._after_rebalance).

    def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("partitions revoked: %s", _tps(revoked))
        self.worker.rebalanced = True

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("partitions assigned: %s", _tps(assigned))
        self.worker.new_assignment = list(assigned)
        self.worker.rebalanced = True


def _member(metadata: Any) -> tuple[Any, Any]:
    return metadata.generation_id, metadata.member_id


def _tps(tps: Any) -> str:
    return ", ".join(sorted(f"{tp.topic}:{tp.partition}" for tp in tps)) or "none"


class Worker:
    """One worker process: build everything from ``settings``, then :meth:`run` until stopped."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        freeze_gc: bool = False,
    ) -> None:
        self.settings = settings
        self.freeze_gc = freeze_gc  # a process-wide setting: only for the process's own worker
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self._stop = False
        self._next_reload_check = 0.0
        self._refused: set[Any] = set()
        self._flight: _Flight | None = None
        self._pending: _Pending | None = None
        self._rewound_to_committed = False
        self._group_metadata: Any = None
        self.rebalanced = False  # set by the rebalance listener (kafka-python's I/O thread)
        self.new_assignment: list[TopicPartition] | None = None
        self._to_commit: dict[TopicPartition, OffsetAndMetadata] = {}
        self._wake = threading.Event()  # set by a stop request: cuts backoff waits short
        self._failed_deliveries = 0
        self.store = self._open_store(settings.store)
        self.model_set = ModelSet(self.store, settings.models)
        strategies = build_strategies(
            self.store, self.model_set, settings.strategy, settings.shadow_strategies
        )
        self.pipeline = Pipeline(
            self.model_set,
            strategies,
            settings.on_model_error,
            settings.validation.max_event_bytes,
            self.metrics,
            settings.topics.dead_letter_max_bytes,
            settings.runtime.model_threads,
        )
        for name, version in self.model_set.versions.items():
            self.metrics.set_model_version(name, version)
        self.exactly_once = settings.kafka.processing_guarantee == "exactly_once"
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.labels_consumer: KafkaConsumer | None = None
        self.joiner: LabelJoiner | None = None
        if settings.topics.labels:
            self.joiner = LabelJoiner(
                self.model_set.layout,
                self.model_set.names,
                [st.name for st in strategies],
                settings.labels,
                self.metrics,
            )
        self.lag = LagMonitor(settings, self.metrics)
        self.batches = 0

    @staticmethod
    def _open_store(path: Path) -> ModelStore:
        if not Path(path).is_dir():
            raise ConfigError("store", f"{path} is not a directory")
        try:
            return ModelStore(path)
        except ModelStoreError as exc:
            raise ConfigError("store", f"{exc}") from exc

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Check topics, then build the producer (transactions initialised) and the consumer."""
        s = self.settings
        admin = kafka_io.admin_client(s)
        try:
            kafka_io.ensure_topics(s, admin)
        finally:
            admin.close()
        self.producer = kafka_io.output_producer(s)
        if self.exactly_once:
            producer = self.producer
            kafka_io.with_watchdog(
                producer.init_transactions, "init_transactions", s.kafka.watchdog_s
            )
        if s.topics.labels:
            self.labels_consumer = kafka_io.labels_consumer(s)
        self.consumer = kafka_io.input_consumer(s, listener=_Rebalance(self))
        self.lag.start()
        log.info(
            "worker started: group %s, %s, models %s, strategy %s, shadows %s",
            s.kafka.group_id,
            s.kafka.processing_guarantee,
            self.model_set.versions,
            self.pipeline.active.name,
            [st.name for st in self.pipeline.strategies[1:]],
        )

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("received %s: finishing the current batch", signal.Signals(signum).name)
        self.stop()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def _backoff(self) -> None:
        """Wait before retrying a batch whose delivery failed: 0.1 s doubling up to 5 s."""
        self._failed_deliveries += 1
        self._wake.wait(min(5.0, 0.1 * 2 ** (self._failed_deliveries - 1)))

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Follow the input assignment on the co-partitioned labels topic."""
        labels = self.settings.topics.labels
        if self.labels_consumer is not None and labels:
            tps = [TopicPartition(labels, tp.partition) for tp in assigned]
            self.labels_consumer.assign(tps)
            # Resolve the start ("latest") now, so every label produced from here on is read,
            # rather than at some later poll that could skip labels produced in between.
            for tp in tps:
                try:
                    self.labels_consumer.position(tp, timeout_ms=10_000)
                except KafkaError as exc:
                    log.warning(
                        "cannot find the end of %s:%d yet (%s)", tp.topic, tp.partition, exc
                    )

    def close(self) -> None:
        self.commit_sync()
        self.lag.stop()
        if self.labels_consumer is not None:
            self.labels_consumer.close()
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
        if self.producer is not None:
            self.producer.close(timeout=10)
        self.pipeline.close()
        log.info("worker stopped after %d batches", self.batches)

    def run(self, max_batches: int | None = None) -> None:
        """Poll, process and deliver until stopped.

        The main thread keeps polling while the models work: batch k+1 is gathered (up to
        ``batch.max_events``, at most ``batch.max_wait_ms`` after its first record) while the
        models predict batch k on their own threads, and batch k is delivered (sent, flushed,
        committed) as soon as its models are done. When batch k+1 is complete before that, its
        models start as soon as batch k's are done and batch k is delivered while they run.
        A batch is only sent between polls and committed (``at_least_once``) before the next
        poll, so a rebalance never revokes published, uncommitted work; a batch still being
        predicted or gathered when partitions are revoked is dropped and re-read.
        """
        if self.consumer is None:
            self.connect()
        self._freeze_heap()
        try:
            while not self._stop and (max_batches is None or self.batches < max_batches):
                self._maybe_reload()
                self._poll_labels()
                if self.rebalanced:  # noticed between polls
                    self._after_rebalance({})
                records, span, started = self._poll_batch()
                if not records:
                    continue
                if self._flight is not None:  # its models are still running: wait for them
                    assert self._pending is None  # _poll_batch delivers before it polls
                    self._pending, self._flight = self._finish(self._flight), None
                self._flight = self._start(records, span, started)
                if self._pending is not None and not self._deliver_pending():
                    self._discard_unsent()
            if self._flight is not None and self._pending is None:
                self._pending, self._flight = self._finish(self._flight), None
            if self._pending is not None:
                self._deliver_pending()
        finally:
            self.close()

    def _start(
        self, records: list[Any], span: dict[TopicPartition, tuple[int, int]], started: float
    ) -> _Flight:
        return _Flight(
            span,
            self.pipeline.start(records, started),
            started,
            len(records),
            self._group_metadata,
        )

    def _finish(self, flight: _Flight) -> _Pending:
        """Wait for the models of ``flight``, combine and encode."""
        return _Pending(
            flight.span,
            self.pipeline.finish(flight.inflight),
            flight.started,
            flight.n_records,
            flight.group_metadata,
        )

    def _deliver_ready(self) -> bool:
        """Deliver the batch in flight if its models are done; False if delivery failed."""
        if self._pending is None:
            if self._flight is None or not self.pipeline.ready(self._flight.inflight):
                return True
            self._pending, self._flight = self._finish(self._flight), None
        return self._deliver_pending()

    def _discard_unsent(self, span: dict[TopicPartition, tuple[int, int]] | None = None) -> None:
        """Drop every batch not yet published (in flight, encoded, being gathered: ``span``) and
        rewind so it is read again. After a failed or aborted transaction the partitions were
        already rewound to their committed offsets, which come before all of these."""
        spans = [span or {}]
        flight, self._flight = self._flight, None
        if flight is not None:
            self.pipeline.finish(flight.inflight)  # let its models finish; the result is dropped
            spans.append(flight.span)
        pending, self._pending = self._pending, None
        if pending is not None:
            spans.append(pending.span)
        if self._rewound_to_committed:
            self._rewound_to_committed = False
            return
        self._seek_to_first(*spans)

    def _freeze_heap(self) -> None:
        """With ``freeze_gc``: collect, then freeze every live object (models, libraries, clients)
        so that the collector's full passes only walk what was made since (gc.freeze)."""
        if not self.freeze_gc:
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        log.info("%d objects frozen out of the garbage collector", gc.get_freeze_count())

    def _after_rebalance(self, span: dict[TopicPartition, tuple[int, int]]) -> None:
        """The assignment changed: drop every unpublished batch (records of revoked partitions
        must not be published by this worker now), rewinding the partitions still held."""
        self.rebalanced = False
        if self.new_assignment is not None:
            self.on_assigned(self.new_assignment)
            self.new_assignment = None
        n_unsent = sum(b.n_records for b in (self._flight, self._pending) if b is not None)
        if n_unsent:
            log.info("dropping %d unsent events after a rebalance", n_unsent)
        self._discard_unsent(span)

    # -- one batch ---------------------------------------------------------------------------

    def _poll_batch(self) -> tuple[list[Any], dict[TopicPartition, tuple[int, int]], float]:
        """Up to ``batch.max_events`` records, waiting at most ``batch.max_wait_ms`` after the
        first one, with each partition's first and last offset in the batch.

        While a batch is in flight, each turn takes only what is already fetched and then waits
        for the models (up to the batch's deadline) instead of polling for every few records:
        a poll hands work to kafka-python's I/O thread several times over, and frequent polls
        slow the models down. The batch in flight is delivered as soon as its models are done;
        with ``batch.start_when_idle`` the batch gathered so far then starts at once. Returns an
        empty batch when there was nothing to read, after a rebalance, or when delivering the
        batch in flight failed (then everything unpublished is rewound).
        """
        assert self.consumer is not None
        max_events = self.settings.batch.max_events
        max_wait = self.settings.batch.max_wait_ms / 1000
        when_idle = self.settings.batch.start_when_idle
        batch: list[Any] = []
        span: dict[TopicPartition, tuple[int, int]] = {}
        started = 0.0
        deadline = 0.0
        # exactly_once: the generation this batch is read in, taken before its first poll. A
        # transaction carrying it is fenced by the group coordinator if a rebalance has
        # happened since (KIP-447); taken after the last poll, it could vouch for records read
        # in an earlier generation.
        metadata = self.consumer.group_metadata() if self.exactly_once else None
        while len(batch) < max_events and not self._stop:
            if self.rebalanced:  # kafka-python's I/O thread may rebalance between polls too
                self._after_rebalance(span)
                return [], {}, 0.0
            if not self._deliver_ready():
                self._discard_unsent(span)
                return [], {}, 0.0
            if batch:
                timeout_ms = max(0.0, deadline - time.monotonic()) * 1000
            else:
                timeout_ms = IDLE_POLL_MS  # stay responsive to signals and reloads
            in_flight = self._flight is not None
            try:
                polled = self.consumer.poll(
                    timeout_ms=0 if in_flight else int(timeout_ms),
                    max_records=max_events - len(batch),
                )
            except KafkaError as exc:  # the broker went away: kafka-python reconnects
                log.warning("polling failed (%s); retrying", exc)
                if batch:
                    break  # what was read is still good
                self._wake.wait(0.5)
                continue
            if self.rebalanced:
                # Rewind to everything gathered so far, this poll's records included.
                for tp, tp_records in polled.items():
                    if tp_records:
                        first, _ = span.get(tp, (tp_records[0].offset, 0))
                        span[tp] = (first, tp_records[-1].offset)
                self._after_rebalance(span)
                return [], {}, 0.0
            for tp, tp_records in polled.items():
                if not tp_records:
                    continue
                batch.extend(tp_records)
                first, _ = span.get(tp, (tp_records[0].offset, 0))
                span[tp] = (first, tp_records[-1].offset)
            if batch and not started:
                started = time.perf_counter()
                deadline = time.monotonic() + max_wait
                timeout_ms = min(timeout_ms, max_wait * 1000)
            if len(batch) >= max_events or (batch and time.monotonic() >= deadline):
                break
            if self._flight is not None:
                # Leave the CPU to the models (waiting releases the GIL); deliver next turn.
                self.pipeline.wait(self._flight.inflight, min(timeout_ms, FLIGHT_WAIT_MS) / 1000)
            elif not batch:
                break  # nothing to read
            elif when_idle and self._pending is None:
                break  # the models are free: start now
        if batch and self.exactly_once:
            # kafka-python sets the new generation at the JoinGroup answer, before the new
            # assignment is known: only a stable generation, the same before and after the
            # polls, vouches for these records. Otherwise re-read them once the group settles.
            after = self.consumer.group_metadata()
            if metadata is None or metadata.state != MemberState.STABLE:
                metadata = after  # joined during this batch
            if metadata.state != MemberState.STABLE or _member(metadata) != _member(after):
                log.info("re-reading a batch of %d read while the group rebalanced", len(batch))
                self._seek_to_first(span)
                return [], {}, 0.0
            self._group_metadata = metadata
        return batch, span, started

    def _deliver_pending(self) -> bool:
        """Publish the encoded batch: send, flush and commit it (``at_least_once``), or add it
        in a transaction of its own (``exactly_once``). False when that failed;
        the caller then drops and rewinds every unpublished batch (:meth:`_discard_unsent`)."""
        pending = self._pending
        if pending is None:  # dropped by a rebalance
            return True
        if self.producer is None:  # stopped while replacing it: re-read the batch next time
            return False
        offsets = {
            tp: OffsetAndMetadata(last + 1, None, -1) for tp, (_, last) in pending.span.items()
        }
        if self.exactly_once:
            delivered = self._deliver_transaction(pending, offsets)
        else:
            delivered = self._deliver_at_least_once(pending.result, offsets)
        if not delivered:
            self._backoff()
            return False
        self._pending = None
        self._failed_deliveries = 0
        self.batches += 1
        self._account(pending)
        return True

    def _account(self, pending: _Pending) -> None:
        """Count a published batch and hand its predictions to the label join."""
        result = pending.result
        self._observe(pending.n_records, result, pending.started)
        if self.joiner is not None and result.ids and result.P is not None:
            assert result.available is not None
            self._learn(
                self.joiner.add_predictions(result.ids, result.P, result.available, result.outputs)
            )

    # -- labels ------------------------------------------------------------------------------

    def _poll_labels(self) -> None:
        if self.labels_consumer is None or self.joiner is None:
            return
        if not self.labels_consumer.assignment():
            return
        try:
            polled = self.labels_consumer.poll(timeout_ms=0, max_records=5000)
        except KafkaError as exc:
            log.warning("reading labels failed: %s", exc)
            return
        values = [r.value for batch in polled.values() for r in batch]
        if values:
            self._learn(self.joiner.add_labels(values))

    def _learn(self, joined: Joined | None) -> None:
        """Feed joined labels to the online strategies (hedge, select_best)."""
        if joined is None or not len(joined) or not self.settings.labels.update_online:
            return
        for strategy in self.pipeline.strategies:
            if not strategy.online:
                continue
            try:
                for P, y, available in joined.groups():
                    strategy.combiner.partial_fit(P, y, available=available)
            except Exception as exc:  # an online update must never stop the worker
                self.metrics.strategy_errors.labels(strategy.name).inc()
                log.warning("partial_fit of %s failed: %s", strategy.name, exc)

    def _observe(self, n_records: int, result: BatchResult, started: float) -> None:
        m = self.metrics
        m.events_consumed.labels(self.settings.topics.input).inc(n_records)
        m.events_published.inc(len(result.predictions))
        for stage, n in Counter(stage for _, stage in result.dead_letters).items():
            m.events_dead_lettered.labels(stage).inc(n)
        if result.degraded:
            m.events_degraded.inc(len(result.predictions))
            log.warning(
                "degraded batch of %d: %s",
                len(result.predictions),
                "; ".join(f"{f.model} {f.kind}" for f in result.failures),
            )
        m.batch_size.observe(n_records)
        now = time.time()
        if result.ts.size:
            m.end_to_end_latency.observe_many(now - result.ts)
        m.batch_processing_seconds.observe(time.perf_counter() - started)

    def _send_all(self, result: BatchResult) -> list[Any]:
        assert self.producer is not None
        s = self.settings.topics
        futures = [
            self.producer.send(s.output, key=r.key, value=r.value, headers=r.headers)
            for r in result.predictions
        ]
        futures.extend(
            self.producer.send(s.dead_letter, key=r.key, value=r.value, headers=r.headers)
            for r, _ in result.dead_letters
        )
        return futures

    def _deliver_at_least_once(
        self, result: BatchResult, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> bool:
        assert self.producer is not None and self.consumer is not None
        try:
            futures = self._send_all(result)
            self.producer.flush(timeout=self.settings.kafka.watchdog_s)
            for future in futures:
                future.get(timeout=0)
        except KafkaError as exc:
            log.error("publishing a batch failed (%s); re-reading it from its first offsets", exc)
            return False
        # Everything is published: commit without waiting for the answer (a sync commit costs
        # a coordinator round trip per batch). Offsets only grow, so a failed async commit is
        # covered by the next one; rebalances and shutdown commit synchronously.
        self._to_commit.update(offsets)
        self.consumer.commit_async(offsets, callback=self._on_commit)
        return True

    def _on_commit(self, offsets: Any, response: Any) -> None:
        if isinstance(response, Exception):
            log.warning("an async offset commit failed (%s); the next commit covers it", response)

    def commit_sync(self) -> None:
        """Commit the offsets of every published batch still held, waiting for the answer."""
        if self.consumer is None or not self._to_commit or self.exactly_once:
            return
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in self._to_commit.items() if tp in assigned}
        self._to_commit.clear()
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            log.error("committing offsets failed (%s); they will be read again", exc)

    # -- transactions (exactly_once) ----------------------------------------------------------

    def _deliver_transaction(
        self, pending: _Pending, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> bool:
        """One transaction per batch: begin, send, the offsets with the group metadata of the
        generation the batch was read in, commit. On failure abort it, rewind every assigned
        partition to its committed offset and return False.

        A transaction spanning several batches (committed every 100 ms, as Kafka Streams does)
        was tried: 0.84 to 0.89 of at_least_once instead of about 0.8, but the rebalance fault
        test then saw 316 to 662 events published twice under read_committed (see
        benchmarks/README.md), so each batch keeps its own transaction.
        """
        assert self.producer is not None and self.consumer is not None
        producer, consumer = self.producer, self.consumer
        metadata = pending.group_metadata or consumer.group_metadata()
        watchdog = self.settings.kafka.watchdog_s
        try:
            producer.begin_transaction()
            self._send_all(pending.result)
            kafka_io.with_watchdog(
                lambda: producer.send_offsets_to_transaction(offsets, metadata),
                "send_offsets_to_transaction",
                watchdog,
            )
            kafka_io.with_watchdog(producer.commit_transaction, "commit_transaction", watchdog)
        except FATAL_TXN_ERRORS as exc:
            raise DeliveryError(f"this worker's producer was fenced ({exc}); exiting") from exc
        except TransactionWatchdogError as exc:
            # The broker went away mid-transaction: a new producer with the same transactional
            # id fences the stuck one and aborts its open transaction.
            log.error("%s; replacing the producer and re-reading from committed", exc)
            self.metrics.transactions_aborted.inc()
            self._replace_producer()
            self._seek_to_committed()
            return False
        except KafkaError as exc:
            log.error("transaction failed (%s); aborting and re-reading from committed", exc)
            self.metrics.transactions_aborted.inc()
            try:
                kafka_io.with_watchdog(producer.abort_transaction, "abort_transaction", watchdog)
            except FATAL_TXN_ERRORS as abort_exc:
                raise DeliveryError(f"this worker's producer was fenced ({abort_exc})") from exc
            except (KafkaError, TransactionWatchdogError) as abort_exc:
                log.error("aborting failed (%s); replacing the producer", abort_exc)
                self._replace_producer()
            self._seek_to_committed()
            return False
        self.metrics.transactions_committed.inc()
        return True

    def _replace_producer(self) -> None:
        """Close the producer without waiting and build a new one, retrying until it is ready
        (or the worker is asked to stop)."""
        old, self.producer = self.producer, None
        if old is not None:
            try:
                kafka_io.with_watchdog(lambda: old.close(timeout=0), "close", 5.0)
            except Exception as exc:  # the old client is being discarded either way
                log.warning("closing the old producer: %s", exc)
        while not self._stop:
            try:
                producer = kafka_io.output_producer(self.settings)
                if self.exactly_once:
                    kafka_io.with_watchdog(
                        producer.init_transactions,
                        "init_transactions",
                        self.settings.kafka.watchdog_s,
                    )
                self.producer = producer
                log.info("producer replaced")
                return
            except (KafkaError, WorkerError) as exc:
                log.warning("the new producer is not ready yet (%s)", exc)
                self._backoff()

    def _seek_to_first(self, *spans: dict[TopicPartition, tuple[int, int]]) -> None:
        """Rewind each assigned partition to the first offset it has in any of ``spans``."""
        assert self.consumer is not None
        first: dict[TopicPartition, int] = {}
        for span in spans:
            for tp, (offset, _) in span.items():
                first[tp] = min(offset, first.get(tp, offset))
        assigned = self.consumer.assignment()
        for tp, offset in first.items():
            if tp in assigned:
                self.consumer.seek(tp, offset)

    def _seek_to_committed(self) -> None:
        """Rewind every assigned partition to its committed offset (retried with backoff: a
        position past the committed offset would skip events)."""
        self._rewound_to_committed = True
        while not self._stop:
            try:
                self._seek_to_committed_once()
                return
            except KafkaError as exc:
                log.warning("reading committed offsets failed (%s); retrying", exc)
                self._backoff()

    def _seek_to_committed_once(self) -> None:
        assert self.consumer is not None
        for tp in self.consumer.assignment():
            committed = self.consumer.committed(tp, timeout_ms=10_000)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    def _heldout_probe(self) -> Any:
        """A probe batch for a promoted model before any good batch was seen."""
        try:
            data = self.store.load_dataset(heldout_name(self.model_set))
            return np.asarray(data.arrays["X"][:64], dtype=np.float64)
        except ModelStoreError:
            return np.zeros((8, self.model_set.schema.n_features))

    # -- hot reload --------------------------------------------------------------------------

    def _maybe_reload(self) -> None:
        if not self.settings.reload.enabled:
            return
        now = time.monotonic()
        if now < self._next_reload_check:
            return
        self._next_reload_check = now + self.settings.reload.interval_s
        for promotion in self.model_set.pending_promotions():
            if promotion in self._refused:
                continue
            probe = self.pipeline.last_good_X
            if probe is None:
                probe = self._heldout_probe()
            try:
                candidate = self.model_set.load_candidate(promotion, probe)
            except (ModelStoreError, ValueError, RuntimeError) as exc:
                self.metrics.model_reloads.labels(promotion.model, "refused").inc()
                log.error(
                    "refusing %s v%d, still serving v%d: %s",
                    promotion.model,
                    promotion.new_version,
                    promotion.old_version,
                    exc,
                )
                self._refused.add(promotion)  # not retried on every check
                continue
            if self._flight is not None and self._pending is None:
                # finish it with the models and strategies it began with; delivered next turn
                self._pending, self._flight = self._finish(self._flight), None
            old = self.model_set.swap(candidate)
            try:
                strategies = build_strategies(
                    self.store,
                    self.model_set,
                    self.settings.strategy,
                    self.settings.shadow_strategies,
                )
            except ConfigError as exc:
                self.model_set.swap(old)
                self.metrics.model_reloads.labels(promotion.model, "refused").inc()
                log.error(
                    "refusing %s v%d: strategies cannot be refit: %s",
                    promotion.model,
                    promotion.new_version,
                    exc,
                )
                continue
            self.pipeline.strategies = strategies
            self.metrics.set_model_version(promotion.model, candidate.version, old.version)
            self.metrics.model_reloads.labels(promotion.model, "swapped").inc()
            log.info("hot reload: %s v%d -> v%d", promotion.model, old.version, candidate.version)
            del old
            self._freeze_heap()  # frees the old version's cycles, freezes the new one
