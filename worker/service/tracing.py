"""OpenTelemetry spans of each batch (``tracing.otlp_endpoint``; extra ``streamfuse[otel]``).

One ``streamfuse.batch`` span per batch, from its first record's arrival to the end of its
delivery, linked to each record's W3C ``traceparent`` (the first ``tracing.max_links``; records
without a valid one have no link), with the batch's size, partitions, guarantee and outcome;
under it a ``predict <model>`` span per model that returned and a ``combine <strategy>`` span
per strategy. The children are made after the batch from the ``time.perf_counter`` readings
the pipeline takes anyway, so nothing runs per event on the models' path; reading the links is
one pass over the records' headers per batch. The batch span's trace id is the exemplar of the
batch's latency observations (:mod:`worker.metrics`).

Off (no endpoint), :func:`open_tracer` returns None, the loop checks None once per batch and
OpenTelemetry is never imported. Spans go out through the SDK's ``BatchSpanProcessor`` and
OTLP/HTTP exporter, on their own thread; a collector that does not answer loses spans, never
batches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from worker.batch.headers import TRACEPARENT, traceparent_ids
from worker.batch.records import InRecord
from worker.config import Settings
from worker.delivery import Batch
from worker.inference.pipeline import BatchResult

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Link

__all__ = ["BatchTracer", "open_tracer"]

BATCH_SPAN = "streamfuse.batch"

log = logging.getLogger("streamfuse.worker")


def open_tracer(settings: Settings) -> BatchTracer | None:
    """The worker's tracer, or None when ``tracing.otlp_endpoint`` is not set."""
    t = settings.tracing
    if t.otlp_endpoint is None:
        return None
    where = urlsplit(t.otlp_endpoint)  # host and port only: a URL may hold a user's password
    log.info("tracing: spans to %s:%s, sample ratio %g", where.hostname, where.port, t.sample_ratio)
    return BatchTracer(settings)


class BatchTracer:
    """Spans of each batch: :meth:`begin` when its models start, :meth:`end` once delivered
    (or dropped). ``exporter``: the OTLP/HTTP one unless given (tests pass an in-memory one)."""

    def __init__(self, settings: Settings, exporter: SpanExporter | None = None) -> None:
        from opentelemetry.context import Context
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanLimits, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import (
            Link,
            SpanContext,
            Status,
            StatusCode,
            TraceFlags,
            set_span_in_context,
        )

        t = settings.tracing
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            headers = {k: v.get_secret_value() for k, v in t.headers.items()}
            exporter = OTLPSpanExporter(t.otlp_endpoint, headers=headers, timeout=t.timeout_s)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": t.service_name}),
            sampler=ParentBased(TraceIdRatioBased(t.sample_ratio)),
            span_limits=SpanLimits(max_links=t.max_links),
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("streamfuse")
        self.max_links = t.max_links
        self.guarantee = settings.kafka.processing_guarantee
        self._root, self._Link, self._SpanContext, self._TraceFlags = (
            Context(),
            Link,
            SpanContext,
            TraceFlags,
        )
        self._in, self._error = set_span_in_context, Status(StatusCode.ERROR)

    def begin(self, batch: Batch, result: BatchResult) -> None:
        """Start ``batch``'s span (at its first record's arrival); its trace id becomes the
        exemplar of the batch's latency observations when it is sampled."""
        links, more = self._links(batch.records)
        partitions = sorted(f"{tp.topic}-{tp.partition}" for tp in batch.span)
        span = self.tracer.start_span(
            BATCH_SPAN,
            context=self._root,
            links=links,
            start_time=_ns(batch.started),
            attributes={
                "messaging.batch.message_count": batch.n_records,
                "streamfuse.partitions": partitions,
                "streamfuse.guarantee": self.guarantee,
                "streamfuse.links_capped": more,
            },
        )
        result.trace = span
        context = span.get_span_context()
        if context.trace_flags.sampled:
            result.exemplar = {"trace_id": format(context.trace_id, "032x")}

    def end(self, result: BatchResult, outcome: str) -> None:
        """End the batch's span (``outcome``: delivered, or why not) after its children."""
        span: Any = result.trace
        if span is None:
            return
        result.trace = None
        if span.is_recording():
            self._children(span, result)
            span.set_attributes(
                {
                    "streamfuse.outcome": outcome,
                    "streamfuse.published": len(result.predictions),
                    "streamfuse.dead_lettered": len(result.dead_letters),
                    "streamfuse.degraded": result.degraded,
                }
            )
            for failure in result.failures:
                span.add_event(
                    "model failure",
                    {"model": failure.model, "kind": failure.kind, "message": failure.message},
                )
            if outcome != "delivered":
                span.set_status(self._error)
        span.end()

    def shutdown(self) -> None:
        """Export what is left (the processor's own bounded wait), then stop its thread."""
        self.provider.shutdown()

    def _children(self, span: Any, result: BatchResult) -> None:
        parent = self._in(span)
        start = self.tracer.start_span
        if result.model_started is not None and result.model_seconds is not None:
            timings = zip(result.models, result.model_started, result.model_seconds, strict=True)
            for name, began, took in timings:
                if began > 0:
                    child = start(
                        f"predict {name}",
                        parent,
                        attributes={"streamfuse.model": name},
                        start_time=_ns(float(began)),
                    )
                    child.end(_ns(float(began + took)))
        for name, began, ended in result.combined:
            child = start(
                f"combine {name}",
                parent,
                attributes={"streamfuse.strategy": name},
                start_time=_ns(began),
            )
            child.end(_ns(ended))

    def _links(self, records: Sequence[InRecord]) -> tuple[list[Link], bool]:
        """A link to each record's ``traceparent`` (the first ``max_links``); True when a
        record beyond them had one too."""
        links: list[Link] = []
        for record in records:
            headers = record.headers
            if not headers:
                continue
            for name, value in headers:
                if name != TRACEPARENT:
                    continue
                ids = traceparent_ids(value)
                if ids is None:
                    break
                if len(links) == self.max_links:
                    return links, True
                trace_id, span_id, flags = ids
                context = self._SpanContext(
                    trace_id, span_id, is_remote=True, trace_flags=self._TraceFlags(flags)
                )
                links.append(self._Link(context))
                break
        return links, False


def _ns(perf: float) -> int:
    """A ``time.perf_counter`` reading as epoch nanoseconds (the spans' clock)."""
    return time.time_ns() - int((time.perf_counter() - perf) * 1e9)
