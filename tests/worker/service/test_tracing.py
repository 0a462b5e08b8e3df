"""Issue 24's OpenTelemetry spans (worker.service.tracing) on the real loop and pipeline.

The loop, the pipeline (two tiny models, a fitted ``soft_vote``) and at_least_once delivery are
real; only Kafka is the in-memory fake (tests/support/fake_transport.py), and the spans go to
the SDK's InMemorySpanExporter. tests/integration/test_tracing.py sends them over OTLP/HTTP
from a worker process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from tests.support.fake_transport import FakeSink, FakeSource, Log
from tests.support.serving import two_model_serving
from worker import cli
from worker.config import (
    BatchSettings,
    ModelErrorPolicy,
    TopicsSettings,
    settings_from_dict,
)
from worker.delivery import AtLeastOnce, Backoff
from worker.histograms import BatchHistogram
from worker.inference.pipeline import Pipeline
from worker.inference.serving import Serving
from worker.metrics import LATENCY_BUCKETS, Metrics
from worker.service.loop import Loop
from worker.service.tracing import BATCH_SPAN, BatchTracer
from worker.transport import TopicPartition

ROOT = Path(__file__).resolve().parents[3]
TOPICS = TopicsSettings(input="in", output="out", dead_letter="dlq", labels=None)
MINIMAL: dict[str, Any] = {"models": [{"name": "a"}], "strategy": {"name": "soft_vote"}}
ENDPOINT = "http://127.0.0.1:9/v1/traces"  # never reached: the tests export in memory


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Serving:
    return two_model_serving(tmp_path_factory.mktemp("tracing") / "store")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def pipeline(serving: Serving, metrics: Metrics) -> Iterator[Pipeline]:
    p = Pipeline(serving, ModelErrorPolicy(), max_event_bytes=1 << 16, metrics=metrics)
    yield p
    p.close()


def traceparent(i: int) -> bytes:
    return f"00-{i + 1:032x}-{i + 1:016x}-01".encode()


def filled(n: int, traced: set[int]) -> Log:
    """``n`` events on each of 2 partitions; event i of partition 0 carries traceparent(i) when
    i is in ``traced`` (and a malformed one at i = n - 1)."""
    log = Log("in")
    gen = np.random.default_rng(1)
    for p in range(2):
        log.append(
            p,
            [
                orjson.dumps({"id": f"p{p}-{i}", "features": row.tolist()})
                for i, row in enumerate(gen.normal(size=(n, 3)))
            ],
        )
    part = log.partitions[0]
    for i in traced:
        part[i] = replace(part[i], headers=[("x-other", b"1"), ("traceparent", traceparent(i))])
    part[n - 1] = replace(part[n - 1], headers=[("traceparent", b"00-not-a-trace-context-01")])
    return log


def run(pipeline: Pipeline, log: Log, tracer: BatchTracer | None, max_events: int = 64) -> Loop:
    source, sink = FakeSource(log), FakeSink(log)
    backoff = Backoff()
    backoff.wait = lambda seconds=None: None  # type: ignore[method-assign]  # no waiting here
    delivery = AtLeastOnce(source, sink, TOPICS, 5.0, Metrics(CollectorRegistry()), backoff)
    batch = BatchSettings(max_events=max_events, max_wait_ms=0)
    loop = Loop(batch, pipeline, source, delivery, backoff, tracer=tracer)
    n = sum(len(part) for part in log.partitions.values())

    def check(src: FakeSource) -> None:
        assert src.n_polls < 20_000, "the loop made no progress"
        if sum(log.committed.get(TopicPartition("in", p), 0) for p in range(2)) == n:
            loop.stop()

    source.on_poll = check
    loop.run()
    return loop


def tracer_of(exporter: InMemorySpanExporter, **tracing: Any) -> BatchTracer:
    config = {**MINIMAL, "tracing": {"otlp_endpoint": ENDPOINT, **tracing}}
    return BatchTracer(settings_from_dict(config), exporter)


def finished(tracer: BatchTracer, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    tracer.provider.force_flush()
    return list(exporter.get_finished_spans())


def test_one_span_per_batch_linked_to_the_records_with_a_child_per_model_and_strategy(
    pipeline: Pipeline,
) -> None:
    exporter = InMemorySpanExporter()
    tracer = tracer_of(exporter)
    traced = {0, 3, 4, 17}
    loop = run(pipeline, filled(20, traced), tracer, max_events=16)
    spans = finished(tracer, exporter)
    batches = [s for s in spans if s.name == BATCH_SPAN]
    assert len(batches) == loop.n_delivered >= 3  # 40 events, at most 16 a batch
    assert sum(s.attributes["messaging.batch.message_count"] for s in batches) == 40
    linked = {(link.context.trace_id, link.context.span_id) for s in batches for link in s.links}
    assert linked == {(i + 1, i + 1) for i in traced}  # the malformed one: no link
    assert all(link.context.is_remote for s in batches for link in s.links)
    for batch in batches:
        attributes = batch.attributes
        assert attributes["streamfuse.outcome"] == "delivered"
        assert attributes["streamfuse.guarantee"] == "at_least_once"
        assert set(attributes["streamfuse.partitions"]) <= {"in-0", "in-1"}
        assert attributes["streamfuse.published"] == attributes["messaging.batch.message_count"]
        children = [
            s for s in spans if s.parent is not None and s.parent.span_id == batch.context.span_id
        ]
        assert sorted(c.name for c in children) == ["combine soft_vote", "predict a", "predict b"]
        for child in children:
            assert child.context.trace_id == batch.context.trace_id
            assert batch.start_time <= child.start_time <= child.end_time <= batch.end_time
        assert batch.parent is None
    tracer.shutdown()


def test_the_links_per_span_are_capped(pipeline: Pipeline) -> None:
    exporter = InMemorySpanExporter()
    tracer = tracer_of(exporter, max_links=3)
    run(pipeline, filled(10, set(range(9))), tracer)
    (batch,) = [s for s in finished(tracer, exporter) if s.name == BATCH_SPAN]
    assert [link.context.span_id for link in batch.links] == [1, 2, 3]
    assert batch.attributes["streamfuse.links_capped"] is True
    tracer.shutdown()


def test_no_batch_sampled_no_span_and_no_exemplar(pipeline: Pipeline, metrics: Metrics) -> None:
    exporter = InMemorySpanExporter()
    tracer = tracer_of(exporter, sample_ratio=0.0)
    loop = run(pipeline, filled(10, {1}), tracer)
    assert loop.n_delivered >= 1
    assert finished(tracer, exporter) == []
    assert b"trace_id" not in openmetrics(metrics.registry)
    tracer.shutdown()


def test_the_model_latency_carries_the_batch_trace_as_exemplar(
    pipeline: Pipeline, metrics: Metrics
) -> None:
    exporter = InMemorySpanExporter()
    tracer = tracer_of(exporter)
    run(pipeline, filled(10, set()), tracer)
    traces = {
        format(s.context.trace_id, "032x") for s in finished(tracer, exporter) if s.parent is None
    }
    text = openmetrics(metrics.registry).decode()
    lines = [
        x for x in text.splitlines() if x.startswith("streamfuse_model_predict_seconds_bucket")
    ]
    shown = {x.split('trace_id="')[1][:32] for x in lines if "trace_id=" in x}
    assert shown and shown <= traces
    tracer.shutdown()


def test_the_batch_histogram_keeps_an_exemplar_per_bucket_reached() -> None:
    registry = CollectorRegistry()
    hist = BatchHistogram("t_seconds", "t", LATENCY_BUCKETS, registry=registry)
    hist.observe_many(np.array([0.002, 0.0021, 0.4]))
    hist.observe_many(np.array([0.002, 0.4, np.nan]), {"trace_id": "ab" * 16})
    text = openmetrics(registry).decode()
    with_exemplar = [x for x in text.splitlines() if "# {" in x]
    assert [x.split("{")[1].split("}")[0] for x in with_exemplar] == ['le="0.0025"', 'le="0.5"']
    assert all(f'trace_id="{"ab" * 16}"' in x for x in with_exemplar)
    assert 't_seconds_bucket{le="+Inf"} 5.0' in text
    assert "trace_id" not in generate_text(registry)


def generate_text(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def test_off_opentelemetry_is_never_imported(tmp_path: Path) -> None:
    """A worker built from settings without ``tracing`` never imports OpenTelemetry."""
    code = (
        "import sys\n"
        "from worker.config import settings_from_dict\n"
        "from worker.service import worker, loop, tracing\n"
        f"s = settings_from_dict({MINIMAL!r})\n"
        "assert tracing.open_tracer(s) is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"
    assert "opentelemetry" in sys.modules  # this process did import it: the check can fail


def test_tracing_without_the_extra_exits_2_with_the_pip_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def without_the_exporter(name: str, *args: Any) -> Any:
        return None if name.startswith("opentelemetry.exporter") else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_the_exporter)
    path = tmp_path / "sf.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "tracing": {"otlp_endpoint": ENDPOINT}}))
    code = cli.main(["run", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "tracing.otlp_endpoint" in err and "pip install 'streamfuse[otel]'" in err


def test_the_endpoint_gets_its_path_and_the_headers_are_never_shown() -> None:
    config = {
        **MINIMAL,
        "tracing": {
            "otlp_endpoint": "http://collector:4318",
            "headers": {"authorization": "t0k3n"},
        },
    }
    settings = settings_from_dict(config)
    assert settings.tracing.otlp_endpoint == "http://collector:4318/v1/traces"
    assert "t0k3n" not in repr(settings) + orjson.dumps(settings.redacted()).decode()
    assert settings.tracing.headers["authorization"].get_secret_value() == "t0k3n"
    assert settings_from_dict(MINIMAL).tracing.otlp_endpoint is None
    with pytest.raises(ValueError, match="not an http"):
        settings_from_dict({**MINIMAL, "tracing": {"otlp_endpoint": "collector:4318"}})


def test_metrics_serves_the_exemplars_to_an_openmetrics_scraper() -> None:
    from urllib.request import Request, urlopen

    from worker.service.http import serve_metrics

    registry = CollectorRegistry()
    hist = BatchHistogram("t_seconds", "t", LATENCY_BUCKETS, registry=registry)
    hist.observe_many(np.array([0.002]), {"trace_id": "cd" * 16})
    server = serve_metrics(registry, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        with urlopen(Request(url, headers=accept), timeout=10) as answer:
            kind, body = answer.headers["Content-Type"], answer.read().decode()
        with urlopen(url, timeout=10) as answer:
            plain = answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert kind.startswith("application/openmetrics-text")
    assert f'# {{trace_id="{"cd" * 16}"}} 0.002' in body
    assert "trace_id" not in plain
