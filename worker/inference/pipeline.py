"""The hot path of one micro-batch, without Kafka: decode → validate → predict → combine → encode.

:meth:`Pipeline.process` turns a list of consumed records into prediction records and
dead-letter records. Nothing here touches the network, so unit tests and ``streamfuse replay``
drive it directly; :mod:`worker.service.loop` adds the consumer, the producer and the commits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from combiners import Explanation
from worker.batch.decode import DecodedBatch, Schema, decode_batch
from worker.batch.encode import encode_predictions
from worker.batch.framed import FieldMap, ReaderSource, decode_mixed
from worker.batch.headers import HeaderCarry
from worker.batch.records import (
    InRecord,
    Outgoing,
    OutRecord,
    dead_letter,
    event_times,
    source_of,
)
from worker.config import InputSettings, ModelErrorPolicy
from worker.inference.arms import event_keys
from worker.inference.candidate import ArmOutputs, Arms
from worker.inference.fanout import Failure, Fanout, FanoutResult, Submitted
from worker.inference.serving import Serving
from worker.inference.strategies import ExplainingCombiner
from worker.metrics import Metrics

__all__ = ["BatchResult", "InFlight", "OutputEncoder", "Pipeline"]

log = logging.getLogger("streamfuse.pipeline")


class OutputEncoder(Protocol):
    """Re-encodes a batch's JSON predictions (``output.format``: worker.schemas.output)."""

    def encode(self, documents: Sequence[bytes]) -> list[bytes]: ...


@dataclass
class BatchResult(Outgoing):
    """What one batch produced: what it publishes (:class:`Outgoing`) and what it tells.

    ``ids``, ``outputs`` (strategy name to (n_ok, n_outputs)), ``P`` and ``available`` describe
    the published predictions, for the label join; ``X`` (n_ok, n_features) their features, for
    the drift monitor.
    """

    ids: list[str | int] = field(default_factory=list)
    ts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    X: np.ndarray | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    P: np.ndarray | None = None
    available: np.ndarray | None = None
    failures: list[Failure] = field(default_factory=list)
    degraded: bool = False
    arms: ArmOutputs | None = None  # while a rollout runs: both arms, for its gates
    # tracing.otlp_endpoint set (worker.service.tracing): the batch's span, opaque here, and the
    # exemplar its latencies are observed with; the models' and strategies' timings, for spans
    trace: object = None
    exemplar: dict[str, str] | None = None
    models: Sequence[str] = ()
    model_started: np.ndarray | None = None  # time.perf_counter, per model (0: no result)
    model_seconds: np.ndarray | None = None
    combined: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, end


@dataclass
class InFlight:
    """A batch between :meth:`Pipeline.start` and :meth:`Pipeline.finish`."""

    records: Sequence[InRecord]
    started: float
    serving: Serving  # what this batch is predicted and combined with, start to finish
    result: BatchResult
    decoded: DecodedBatch | None = None
    submitted: Submitted | None = None
    arms: Arms | None = None  # a rollout's candidate, with its own models' work
    arms_submitted: Submitted | None = None
    begun: float = field(default_factory=time.perf_counter)  # when start() was called


class Pipeline:
    """Runs batches with the current :class:`Serving` snapshot (``serving``; a hot reload
    assigns a new one between batches: each batch keeps the snapshot it started with)."""

    def __init__(
        self,
        serving: Serving,
        policy: ModelErrorPolicy,
        max_event_bytes: int,
        metrics: Metrics | None = None,
        dead_letter_max_bytes: int = 900_000,
        threads_per_model: int = 0,
        explain: bool = False,
        scores_by_class: bool = False,
        readers: ReaderSource | None = None,
        input_fields: InputSettings | None = None,
        carry: HeaderCarry | None = None,
        output: OutputEncoder | None = None,
    ) -> None:
        self.serving = serving
        self.arms: Arms | None = None  # a rollout's candidate arm, swapped like ``serving``
        # With a Schema Registry: framed records decoded by their writer schema (worker.schemas)
        self.readers = readers
        self.input_fields = input_fields or InputSettings()
        self._field_maps: dict[Schema, FieldMap] = {}
        self.explain = explain  # output.explain: per-model contributions in every prediction
        self.scores_by_class = scores_by_class  # output.scores_by_class
        self.policy = policy
        self.max_event_bytes = max_event_bytes
        self.metrics = metrics
        self.fanout = Fanout(serving.names, policy.timeout_ms / 1000, threads_per_model)
        self.last_good_X: np.ndarray | None = None
        self.dead_letter_max_bytes = dead_letter_max_bytes
        # output.headers / output.trace_context: None reads no input header at all
        self.carry = carry
        # output.format other than json: the JSON documents re-encoded (worker.schemas.output)
        self.output = output

    def close(self) -> None:
        self.fanout.close()

    def process(self, records: Sequence[InRecord], started: float | None = None) -> BatchResult:
        """Run one batch through every stage and wait for it."""
        return self.finish(self.start(records, started))

    def _dead_letter(self, record: InRecord, stage: str, why: str) -> tuple[OutRecord, str]:
        """:func:`dead_letter` with the input headers ``output.*`` carries (see HeaderCarry)."""
        out, stage = dead_letter(record, stage, why, self.dead_letter_max_bytes)
        if self.carry is not None:
            out.headers.extend(self.carry.carried([record])[0])
        return out, stage

    def start(self, records: Sequence[InRecord], started: float | None = None) -> InFlight:
        """Decode and validate the batch and start the models on it; returns at once.

        The models run on their own threads (releasing the GIL) while the caller does Kafka
        work; :meth:`finish` waits for them, combines and encodes.
        """
        started = time.perf_counter() if started is None else started
        serving = self.serving
        flight = InFlight(records, started, serving, BatchResult())
        if not records:
            return flight
        values = [r.value for r in records]
        if self.readers is None:
            decoded = decode_batch(values, serving.schema, self.max_event_bytes)
        else:
            fields = self.field_map(serving.schema)
            decoded = decode_mixed(
                values, serving.schema, self.max_event_bytes, self.readers, fields
            )
        for rejection in decoded.rejections:
            flight.result.dead_letters.append(
                self._dead_letter(records[rejection.index], rejection.stage, rejection.reason)
            )
        if len(decoded.ids) == 0:
            return flight
        decoded.ts = event_times(decoded.ts, records, decoded.index)  # else the record's time
        flight.decoded = decoded
        flight.submitted = self.fanout.submit(serving.predict_fns, decoded.X)
        arms = self.arms
        if arms is not None and arms.base is serving:  # built from another snapshot: not yet
            flight.arms, flight.arms_submitted = arms, arms.submit(decoded.X)
        return flight

    def field_map(self, schema: Schema) -> FieldMap:
        """Where framed records hold the features of ``schema`` (``input.*``)."""
        if schema not in self._field_maps:
            s = self.input_fields
            self._field_maps[schema] = FieldMap.for_schema(schema, s.fields, s.id_field, s.ts_field)
        return self._field_maps[schema]

    def wait(self, flight: InFlight, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` (0: do not wait) for the models of ``flight``; True when
        they are done or past their deadline, so that :meth:`finish` would not wait (a model
        that never returns must not hold its batch back until the next one arrives)."""
        submitted = flight.submitted
        if submitted is None:
            return True
        futures = [f for f in submitted.futures if f is not None]
        left = submitted.deadline - time.monotonic()
        if timeout_s <= 0 or left <= 0:
            return left <= 0 or all(f.done() for f in futures)
        futures_wait(futures, timeout=min(timeout_s, left))
        return all(f.done() for f in futures) or time.monotonic() >= submitted.deadline

    def finish(self, flight: InFlight) -> BatchResult:
        if flight.decoded is not None and flight.submitted is not None:
            self._predict_and_encode(flight)
        return flight.result

    def _predict_and_encode(self, flight: InFlight) -> None:  # noqa: C901 (the batch's steps in order, each failure handled where it happens)
        records, result, started = flight.records, flight.result, flight.started
        decoded, serving = flight.decoded, flight.serving
        assert decoded is not None and flight.submitted is not None
        good = [records[i] for i in decoded.index.tolist()]
        layout = serving.layout
        fan = self.fanout.collect(flight.submitted, layout.n_outputs)
        result.models, result.model_started, result.model_seconds = (
            serving.names,
            fan.started,
            fan.seconds,
        )
        self._count_models(serving.names, fan, result.exemplar)
        n_ok = int(fan.available.sum())
        if n_ok < len(fan.available) and (
            self.policy.policy == "fail" or n_ok < self.policy.min_models
        ):
            reason = "; ".join(f"{f.model}: {f.kind}: {f.message}" for f in fan.failures)
            why = f"{n_ok} of {len(fan.available)} models answered ({reason})"
            result.dead_letters.extend(self._dead_letter(r, "predict", why) for r in good)
            return
        outputs: dict[str, np.ndarray] = {}
        for strategy in serving.strategies:
            t0 = time.perf_counter()
            try:
                out = strategy.combiner.combine(fan.P, available=fan.available)
            except Exception as exc:  # a strategy's error: the active one dead-letters the batch
                if self.metrics is not None:
                    self.metrics.strategy_errors.labels(strategy.name).inc()
                if strategy is serving.active:
                    why = f"strategy {strategy.name}: {type(exc).__name__}: {exc}"
                    result.dead_letters.extend(self._dead_letter(r, "combine", why) for r in good)
                    return
                log.warning("shadow strategy %s failed: %s", strategy.name, exc)
                continue
            t1 = time.perf_counter()
            if self.metrics is not None:
                self.metrics.combine_seconds.labels(strategy.name).observe(t1 - t0)
            result.combined.append((strategy.name, t0, t1))
            outputs[strategy.name] = out
        shadows = {s.name: outputs[s.name] for s in serving.shadows if s.name in outputs}
        explanation = self._explain(serving, fan.P, fan.available) if self.explain else None
        combined, canary = outputs[serving.active.name], None
        if flight.arms is not None:
            keys = event_keys([r.key for r in good], decoded.ids)
            result.arms = flight.arms.outputs(keys, combined, fan, flight.arms_submitted)
            combined, canary = result.arms.published(), result.arms.canary
        try:
            values = encode_predictions(
                ids=decoded.ids,
                layout=layout,
                strategy=serving.active.name,
                combined=combined,
                model_names=serving.names,
                model_versions=list(serving.versions.values()),
                P=fan.P,
                available=fan.available,
                failure_kinds={f.model: f.kind for f in fan.failures},
                shadows=shadows,
                latency_ms=(time.perf_counter() - started) * 1000,
                explanation=explanation,
                scores_by_class=self.scores_by_class,
                arms=canary,
            )
            if self.output is not None:
                values = self.output.encode(values)
        except (TypeError, ValueError) as exc:
            why = f"cannot encode the prediction: {exc}"
            result.dead_letters.extend(self._dead_letter(r, "encode", why) for r in good)
            return
        carried = self.carry.carried(good) if self.carry is not None else None
        for i, (record, doc_id, value) in enumerate(zip(good, decoded.ids, values, strict=True)):
            key = record.key if record.key is not None else str(doc_id).encode()
            headers = [("streamfuse.source", source_of(record))]
            if carried is not None:
                headers.extend(carried[i])
            result.predictions.append(OutRecord(key, value, headers))
        result.ids = decoded.ids
        result.ts = decoded.ts
        result.X = decoded.X
        result.outputs = outputs
        result.P = fan.P
        result.available = fan.available
        result.failures = fan.failures
        result.degraded = n_ok < len(fan.available)
        if n_ok == len(fan.available):
            self.last_good_X = decoded.X[:64]

    def _explain(
        self, serving: Serving, P: np.ndarray, available: np.ndarray
    ) -> Explanation | None:
        """The active strategy's per-model contributions, or None (a strategy that cannot
        split its output, or fails to, publishes its predictions without them)."""
        combiner = serving.active.combiner
        if not isinstance(combiner, ExplainingCombiner):
            return None
        try:
            return combiner.explain(P, available=available)
        except Exception as exc:
            log.warning("cannot explain %s: %s", serving.active.name, exc)
            return None

    def _count_models(
        self, names: list[str], fan: FanoutResult, exemplar: dict[str, str] | None
    ) -> None:
        if self.metrics is None:
            return
        for name, took, ok in zip(names, fan.seconds, fan.available, strict=True):
            if ok:
                self.metrics.model_predict_seconds.labels(name).observe(float(took), exemplar)
        for failure in fan.failures:
            self.metrics.model_errors.labels(failure.model, failure.kind).inc()
