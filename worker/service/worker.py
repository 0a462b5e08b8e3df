"""One worker: what is served, the transport, the delivery guarantee and the loop, wired.

:class:`Worker` builds everything that can be checked before the first event from the settings
(store, models, strategies, metrics, label join), :meth:`Worker.connect` checks the topics and
builds the transport's clients, and :meth:`Worker.run` runs the :class:`~.loop.Loop` until
stopped. Between batches it swaps in hot-reloaded snapshots and reads labels; each published
batch is counted and handed to the label join.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from worker.accuracy.labels import LabelJoiner
from worker.accuracy.live import MAX_LABELS_PER_POLL, LiveAccuracy
from worker.batch.headers import HeaderCarry
from worker.batch.records import reason_of
from worker.config import Settings
from worker.delivery import Backoff, Batch, Delivery, call_stuck, delivery_for
from worker.errors import KafkaCallStuckError, RegistryUnavailableError
from worker.inference.models import ModelSet
from worker.inference.pipeline import BatchResult, Pipeline
from worker.inference.reload import Reloader
from worker.inference.serving import Serving, build_serving
from worker.inference.store import open_store
from worker.inference.strategies import strategy_weights
from worker.inference.warm import PROBE_ROWS, warm_threads
from worker.logs import DeadLetterLog
from worker.metrics import Metrics
from worker.service.consumer import RenewableSource, tend
from worker.service.health import Health, stall_bound_s
from worker.service.heldout import heldout_scores
from worker.service.input_topic import InputTopicWatch
from worker.service.lag import LagMonitor
from worker.service.loop import Loop
from worker.service.promotion import Promotion
from worker.service.reference import open_drift, reference_rows
from worker.service.rollout import Rollout
from worker.service.tracing import open_tracer
from worker.service.watchdog import Watchdog
from worker.transport import LabelsReader, Sink, TopicPartition, open_transport

if TYPE_CHECKING:
    from worker.schemas import RegistryReaders
    from worker.schemas.output import RegisteredOutput

__all__ = ["Worker"]

log = logging.getLogger("streamfuse.worker")


class Worker:
    """One worker process: build everything from ``settings``, then :meth:`run` until stopped.

    ``health`` (made here when not given) follows its phases for ``/healthz`` and ``/readyz``:
    the process hands in the one its metrics server already answers with while models load.
    """

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        freeze_gc: bool = False,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.health = health or Health(stall_bound_s(settings))
        self.health.rebalance_stuck_s = settings.kafka.effective_rebalance_stuck_s
        self.watchdog = Watchdog(settings.kafka.effective_rebalance_stuck_s)
        self.health.wedged = self.watchdog.wedged
        self.health.resets_failing = self.watchdog.failing
        self.input_topic = InputTopicWatch(settings.topics.input)
        self.health.input_missing = self.input_topic.missing
        self.freeze_gc = freeze_gc  # a process-wide setting: only for the process's own worker
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.dead_letter_log = DeadLetterLog(
            logging.getLogger("streamfuse.dead_letter"), settings.logging.dead_letter_interval_s
        )
        self.stop_event = threading.Event()  # stop() sets it: the loop ends, backoffs cut short
        self.backoff = Backoff(self.stop_event, on_wait=self.health.heartbeat.beat)
        self.store = open_store(settings.store)
        signed = self.store.signing == "signed"
        self.metrics.store_signed.set(1 if signed else 0)
        if not signed:
            log.warning(
                "the model store %s is not signed: anyone who can write it chooses what is "
                "served (streamfuse store keygen, then set store.key_file)",
                settings.store.path,
            )
        serving = build_serving(
            self.store,
            settings,
            refused=lambda name, why: self.metrics.stored_strategies_refused.labels(name).inc(),
        )
        self.promotion: Promotion | None = None
        if settings.strategy.promote is not None:  # champion/challenger: the group's decision
            self.promotion = Promotion(self.store, settings, self.metrics, serving)
            serving = self.promotion.start(serving)
        readers = self._schema_readers(serving)
        self.output_encoder: RegisteredOutput | None = None
        if settings.output.format != "json":
            from worker.schemas.output import build_output

            assert readers is not None  # the settings require schema_registry.url
            self.output_encoder = build_output(settings, serving, readers.client)
        self.pipeline = Pipeline(
            serving,
            settings.on_model_error,
            settings.validation.max_event_bytes,
            self.metrics,
            settings.topics.dead_letter_max_bytes,
            settings.runtime.model_threads,
            explain=settings.output.explain,
            scores_by_class=settings.output.scores_by_class,
            readers=readers,
            input_fields=settings.input,
            carry=HeaderCarry.build(settings.output.headers, settings.output.trace_context),
            output=self.output_encoder,
        )
        for name, version in serving.versions.items():
            self.metrics.set_model_version(name, version)
        synthetic = reference_rows(self.store, serving.schema.n_features, PROBE_ROWS)
        self.reloader = Reloader(self.store, settings, self.metrics, self._relayout, synthetic)
        self.rollout = Rollout(self.store, settings, self.metrics, synthetic=synthetic)
        warm_threads(self.pipeline.fanout, serving, self.store, settings, self.metrics, synthetic)
        self.accuracy: LiveAccuracy | None = None
        if settings.topics.labels:
            joiner = LabelJoiner(
                serving.layout,
                serving.names,
                [st.name for st in serving.strategies],
                settings.labels,
                self.metrics,
            )
            self.accuracy = LiveAccuracy(joiner, settings.labels.update_online, self.metrics)
            self.accuracy.on_joined = self.rollout.observer(self.promotion)
        self._initialise_series(serving)
        self.drift = open_drift(self.store, serving, settings.drift, self.metrics)
        self.transport = open_transport(settings)
        self.lag = LagMonitor(
            settings,
            self.metrics,
            self.transport.admin,
            reached=self.health.brokers_reached,
            refreshed=self.watchdog.gather,
            topic=self.input_topic,
        )
        self.source: RenewableSource | None = None
        self.sink: Sink | None = None
        self.labels: LabelsReader | None = None
        self.loop: Loop | None = None
        self.health.set_phase("connecting")

    def _schema_readers(self, serving: Serving) -> RegistryReaders | None:
        """With ``schema_registry.url``: the writer schemas' readers (input subject checked)."""
        if self.settings.schema_registry.url is None:
            return None
        from worker.schemas import open_readers

        def wait() -> bool:
            self.backoff.wait()
            return not self.stop_event.is_set()

        return open_readers(self.settings, serving.schema, wait, self.health.registry_reached)

    def _relayout(self, serving: Serving) -> str | None:
        """Why a hot-reloaded snapshot cannot be published in ``output.format``, else None."""
        if self.output_encoder is None:
            return None
        return self.output_encoder.relayout_for(serving)

    @property
    def serving(self) -> Serving:
        return self.pipeline.serving

    @property
    def model_set(self) -> ModelSet:
        return self.pipeline.serving.model_set

    # -- lifecycle ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Check the topics, then build the producer (transactions initialised), the labels
        reader and the consumer."""
        s = self.settings
        admin = self.transport.admin()
        try:
            admin.ensure_topics()
        finally:
            admin.close()
        self.sink = self.transport.sink()
        if s.kafka.processing_guarantee == "exactly_once":
            self.sink.init_transactions()
        self.labels = self.transport.labels()
        self.source = RenewableSource(self.transport.source, self.metrics)
        delivery: Delivery = delivery_for(s, self.source, self.sink, self.metrics, self.backoff)
        self.loop = Loop(
            s.batch,
            self.pipeline,
            self.source,
            delivery,
            self.backoff,
            between_batches=self.between_batches,
            assigned=self.follow_assignment,
            delivered=self.account,
            heartbeat=self.health.heartbeat,
            failed=lambda outcome: self.metrics.delivery_failures.inc(),
            stop_event=self.stop_event,
            tracer=open_tracer(s),  # tracing.otlp_endpoint; None: off, OpenTelemetry not imported
            rebuild=self.source.rebuild,
        )
        self.lag.start()
        self.health.set_phase("running")
        log.info(
            "worker started: group %s, %s, models %s, strategy %s, shadows %s",
            s.kafka.group_id,
            s.kafka.processing_guarantee,
            self.serving.versions,
            self.serving.active.name,
            [st.name for st in self.serving.shadows],
        )

    def run(self, max_batches: int | None = None) -> None:
        """Run the loop until stopped (or ``max_batches`` are delivered), then close."""
        if self.loop is None:
            self.connect()
        assert self.loop is not None
        self._freeze_heap()
        try:
            self.loop.run(max_batches)
        except RegistryUnavailableError as exc:
            if not self.stop_event.is_set():
                raise
            log.info("stopped while waiting for the schema registry (%s): read again", exc)
        finally:
            self.close()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("received %s: finishing the current batch", signal.Signals(signum).name)
        self.stop()

    def stop(self) -> None:
        if self.health.phase == "running":
            self.health.set_phase("stopping")
        self.stop_event.set()

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()
        self.lag.stop()
        if self.labels is not None:
            self.labels.close()
        try:  # each bounded (worker.transport.deadline): one stuck does not keep the next open
            if self.source is not None:
                self.source.close()
        except KafkaCallStuckError as exc:
            call_stuck(exc, self.metrics, "closing the producer")
        try:
            if self.sink is not None:
                self.sink.close(10)
        except KafkaCallStuckError as exc:
            call_stuck(exc, self.metrics, "stopping")
        self.pipeline.close()
        self.health.set_phase("stopped")
        log.info("worker stopped after %d batches", self.loop.n_delivered if self.loop else 0)

    # -- the loop's callbacks ----------------------------------------------------------------

    def between_batches(self) -> None:
        """Swap in a hot-reloaded snapshot; read the labels that arrived; move the drift
        gauges when due."""
        reloaded = self.reloader.check(self.pipeline.serving, self.pipeline.last_good_X)
        if reloaded is not None and self.promotion is not None:
            reloaded = self.promotion.reapply(reloaded, self.pipeline.serving.active.name)
        if reloaded is not None:
            self.pipeline.serving = reloaded
            self.metrics.set_heldout(heldout_scores(self.store, reloaded))
            self.drift = open_drift(self.store, reloaded, self.settings.drift, self.metrics)
            self._freeze_heap(collect=False)  # the new version frozen at once, no full pass
        if self.labels is not None and self.accuracy is not None:
            values = self.labels.poll(MAX_LABELS_PER_POLL)
            self.accuracy.add_labels(values, self.pipeline.serving.strategies)
        if self.promotion is not None:
            promoted = self.promotion.step(self.pipeline.serving)
            if promoted is not None:
                self.pipeline.serving = promoted
        self.pipeline.arms = self.rollout.between_batches(self.pipeline)
        self._export_weights(self.pipeline.serving)  # hedge and select_best learn from labels
        if self.drift is not None:
            self.drift.update_if_due()
        self._report_membership()

    def _report_membership(self) -> None:
        """The source's group membership to the metrics, ``/readyz`` and the watchdog, which
        may reset the consumer (:func:`~.consumer.tend`)."""
        if self.source is not None:
            tend(self.source, self.watchdog, self.loop, self.metrics, self.health, self.input_topic)

    def follow_assignment(self, assignment: Sequence[TopicPartition]) -> None:
        """Read the co-partitioned labels of the input partitions now assigned."""
        self.health.assigned(len(assignment))
        if self.labels is not None:
            missing = self.labels.follow([tp.partition for tp in assignment])
            self.metrics.labels_partitions_missing.set(len(missing))
            if missing:
                log.warning(
                    "the labels topic %s has no partition %s of the input %s (the input grew, the"
                    " labels topic did not): the labels of those events are not read; grow %s to"
                    " the input's partition count",
                    self.settings.topics.labels,
                    ", ".join(map(str, missing)),
                    self.settings.topics.input,
                    self.settings.topics.labels,
                )

    def account(self, batch: Batch, result: BatchResult) -> None:
        """Hand a published batch (``result``: what it produced) to the label join and the drift
        monitor, then count it: a scrape that sees the count sees their figures too."""
        processed_s = time.perf_counter() - batch.started
        self.rollout.delivered(result)  # before the label join: early labels find both arms
        if self.accuracy is not None:
            self.accuracy.add_batch(
                result.ids,
                result.P,
                result.available,
                result.outputs,
                self.pipeline.serving.strategies,
            )
        if self.drift is not None and result.X is not None:
            self.drift.add(result.X, result.P, result.available, result.outputs)
            self.drift.update_if_due()
        self._observe(batch.n_records, result, processed_s)

    def _observe(self, n_records: int, result: BatchResult, processed_s: float) -> None:
        m = self.metrics
        m.events_consumed.labels(self.settings.topics.input).inc(n_records)
        m.events_published.inc(len(result.predictions))
        for stage, n in Counter(stage for _, stage in result.dead_letters).items():
            m.events_dead_lettered.labels(stage).inc(n)
        reasons = Counter((stage, reason_of(r)) for r, stage in result.dead_letters)
        for (stage, reason), n in reasons.items():
            self.dead_letter_log.add(stage, reason, n)
        self.dead_letter_log.flush()
        if result.degraded:
            m.events_degraded.inc(len(result.predictions))
            log.warning(
                "degraded batch of %d: %s",
                len(result.predictions),
                "; ".join(f"{f.model} {f.kind}" for f in result.failures),
            )
        m.batch_size.observe(n_records)
        m.end_to_end_latency.observe_many(time.time() - result.ts, result.exemplar)
        m.batch_processing_seconds.observe(processed_s, result.exemplar)

    def _initialise_series(self, serving: Serving) -> None:
        """Export every series whose labels are known now, before the first event."""
        self.metrics.initialise(
            input_topic=self.settings.topics.input,
            models=serving.names,
            strategies=[st.name for st in serving.strategies],
            rolling=self.accuracy.joiner.series() if self.accuracy is not None else (),
        )
        self.metrics.set_heldout(heldout_scores(self.store, serving))
        self._export_weights(serving)

    def _export_weights(self, serving: Serving) -> None:
        """``streamfuse_strategy_weight`` of every strategy that holds per-model weights."""
        for name, weights in strategy_weights(serving.strategies).items():
            self.metrics.set_strategy_weights(name, serving.names, weights)

    def _freeze_heap(self, collect: bool = True) -> None:
        """With ``freeze_gc``: collect, then freeze every live object (models, libraries, clients)
        so that the collector's full passes only walk what was made since (gc.freeze).

        After a hot swap, ``collect`` False: the new version's objects are frozen as they are.
        A full pass over the ~300,000 frozen objects stops every thread for about 140 ms; what it
        would free of the old version is only its reference cycles (about 500 small objects on
        the bench's store: its arrays go by reference counting), left frozen instead."""
        if not self.freeze_gc:
            return
        if collect:
            gc.unfreeze()
            gc.collect()
        gc.freeze()
        log.info("%d objects frozen out of the garbage collector", gc.get_freeze_count())
