"""Issue 24: a worker process exports its batch spans over OTLP/HTTP to a receiver in the test
(an http.server decoding the protobuf ExportTraceServiceRequest with opentelemetry-proto), each
linked to the input's traceparent, with a child per model and strategy; the worker's /metrics
shows the batch's trace as an exemplar to an OpenMetrics scraper."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import numpy as np
import orjson
import pytest
import yaml
from kafka import KafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from model_store import ModelStore
from tests.support.kafka import Broker
from tests.support.worker import Topics, WorkerProcess, write_config

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
MODELS = ("rf", "hgb", "linear", "mlp")


class Receiver:
    """An OTLP/HTTP trace receiver: every span of every export, by the service that sent it."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with receiver.arrived:
                    for resource in request.resource_spans:
                        service = next(
                            a.value.string_value
                            for a in resource.resource.attributes
                            if a.key == "service.name"
                        )
                        for scope in resource.scope_spans:
                            receiver.spans.extend((service, s) for s in scope.spans)
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, found: Callable[[list[tuple[str, Span]]], bool], timeout: float) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: found(self.spans), timeout), (
                f"{len(self.spans)} spans arrived: {[s.name for _, s in self.spans]}"
            )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def linked(spans: list[tuple[str, Span]]) -> list[Span]:
    """The batch spans linked to the input's traceparent."""
    return [
        s
        for _, s in spans
        if s.name == "streamfuse.batch"
        and any(
            link.trace_id.hex() == TRACE_ID and link.span_id.hex() == PARENT_SPAN
            for link in s.links
        )
    ]


def test_a_span_per_batch_reaches_an_otlp_receiver_linked_to_the_input(
    kafka: Broker,
    topics: Callable[..., Topics],
    group_factory: Callable[[str], str],
    trained_store: Path,
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    X = np.asarray(ModelStore(trained_store).load_dataset("test").arrays["X"], dtype=np.float64)
    t = topics()
    config = write_config(
        tmp_path / "c.yaml",
        store=trained_store,
        bootstrap=kafka.bootstrap,
        topics=t,
        group=group_factory("tracing"),
        kafka={"library": "kafka-python"},
        tracing={"otlp_endpoint": receiver.url, "service_name": "sf-test"},
    )
    port = yaml.safe_load(config.read_text())["metrics"]["port"]
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        worker.wait_assigned()
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
        traceparent = f"00-{TRACE_ID}-{PARENT_SPAN}-01".encode()
        for i in range(3):
            value = orjson.dumps({"id": f"e{i}", "features": X[i].tolist()})
            headers = [("traceparent", traceparent)] if i == 0 else []
            producer.send(t.input, value=value, headers=headers).get(timeout=30)
        producer.close()
        kafka.consume_all(t.output, 3, timeout=90)
        # the SDK exports every 5 s (BatchSpanProcessor's schedule delay)
        receiver.wait_for(lambda spans: bool(linked(spans)), timeout=60)
        accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
        with urlopen(Request(f"http://127.0.0.1:{port}/metrics", headers=accept), timeout=10) as r:
            exposition = r.read().decode()
    finally:
        worker.stop()
    [batch] = linked(receiver.spans)
    assert all(service == "sf-test" for service, _ in receiver.spans)
    attributes = {a.key: a.value for a in batch.attributes}
    assert attributes["streamfuse.outcome"].string_value == "delivered"
    assert attributes["streamfuse.guarantee"].string_value == "at_least_once"
    assert attributes["messaging.batch.message_count"].int_value >= 1
    children = sorted(
        s.name
        for _, s in receiver.spans
        if s.parent_span_id == batch.span_id and s.trace_id == batch.trace_id
    )
    strategies = [f"combine {name}" for name in ("hard_vote", "soft_vote", "stacking")]
    assert children == sorted([*strategies, *(f"predict {m}" for m in MODELS)])
    traces = {s.trace_id.hex() for _, s in receiver.spans if s.name == "streamfuse.batch"}
    predict = [
        line
        for line in exposition.splitlines()
        if line.startswith("streamfuse_model_predict_seconds_bucket") and "trace_id=" in line
    ]
    assert predict and all(line.split('trace_id="')[1][:32] in traces for line in predict)
