"""/healthz and /readyz of a real worker against the broker, one worker shared by the module.

The worker is brought up the way ``streamfuse run`` does (worker.service.process): the port
first (:func:`open_port`), then the models, then the Kafka clients, then the loop; the fixture
asks both endpoints at each step. Then, in order: the healthy worker answers 200 twice; a model
that never returns is left out by its deadline (``on_model_error.timeout_ms``) and the loop
stays alive; a strategy that never returns blocks the loop itself (``combine`` runs on the
loop's thread) and ``/healthz`` fails while ``/metrics`` still answers, until it returns.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.support.kafka import Broker, unique, wait_for
from tests.support.worker import Topics, events, produce, write_config
from worker.config import load_settings
from worker.service.process import open_port
from worker.service.worker import Worker

pytestmark = pytest.mark.kafka

STALL_S = 2.5  # metrics.loop_stall_s: short, so that a stuck loop shows within seconds


def ask(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass
class Live:
    base: str
    worker: Worker
    registry: CollectorRegistry
    bootstrap: str
    topics: Topics
    rows: np.ndarray
    steps: dict[str, dict[str, tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    n_sent: int = 0

    def both(self) -> dict[str, tuple[int, dict[str, Any]]]:
        return {path: ask(self.base + path) for path in ("/healthz", "/readyz")}

    def published(self) -> float:
        return self.registry.get_sample_value("streamfuse_events_published_total") or 0.0

    def send(self, n: int) -> None:
        _, values = events(self.rows[:n], unique("h"))
        produce(self.bootstrap, self.topics.input, values)
        self.n_sent += n


@pytest.fixture(scope="module")
def live(
    kafka: Broker, trained_store: Path, test_rows: np.ndarray, tmp_path_factory
) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("health")
    topics = Topics(*(kafka.create_topic(unique(p)) for p in ("features", "out", "labels", "dlq")))
    config = write_config(
        folder / "streamfuse.yaml",
        store=trained_store,
        bootstrap=kafka.bootstrap,
        topics=topics,
        group=unique("health"),
        shadows=(),
        batch={"max_events": 64, "max_wait_ms": 20},
        on_model_error={"timeout_ms": 300},
        metrics={"loop_stall_s": STALL_S, "lag_interval_s": 0.5},
    )
    settings = load_settings(config)
    registry = CollectorRegistry()
    health, server = open_port(settings, registry)
    assert server is not None
    base = f"http://127.0.0.1:{server.server_address[1]}"
    live: Live | None = None
    thread: threading.Thread | None = None
    try:
        steps = {"loading": {path: ask(base + path) for path in ("/healthz", "/readyz")}}
        worker = Worker(settings, registry, health=health)
        live = Live(base, worker, registry, kafka.bootstrap, topics, test_rows, steps)
        live.steps["connecting"] = live.both()
        worker.connect()  # subscribed; the group answers in the loop's first polls
        live.steps["connected"] = live.both()
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        wait_for(lambda: ask(base + "/readyz")[0] == 200, timeout=60, what="/readyz 200")
        live.send(20)
        wait_for(lambda: live.published() >= 20, timeout=30, what="20 events published")
        yield live
    finally:
        if live is not None:
            live.worker.stop()
        if thread is not None:
            thread.join(30)
        server.shutdown()
        server.server_close()
    assert thread is not None and not thread.is_alive(), "the worker did not stop"


def test_not_ready_while_loading_connecting_and_waiting_for_the_group(live: Live) -> None:
    loading, connecting, connected = (live.steps[s] for s in ("loading", "connecting", "connected"))
    assert loading["/healthz"][0] == 503 and loading["/healthz"][1]["status"] == "starting"
    assert loading["/readyz"] == (
        503,
        {
            "status": "not ready",
            "reason": "loading the models",
            "checks": {
                "models": "loading",
                "kafka": "connecting",
                "assignment": "waiting for the group to assign partitions",
                "loop": "starting",
            },
        },
    )
    assert connecting["/readyz"][0] == 503
    assert connecting["/readyz"][1]["reason"] == "connecting to Kafka"
    assert connecting["/readyz"][1]["checks"]["models"] == "loaded"
    # clients built, the loop not polling yet: alive, connected, but no assignment
    assert connected["/healthz"][0] == 200
    status, body = connected["/readyz"]
    assert status == 503 and body["reason"] == "waiting for the group to assign partitions"
    assert body["checks"]["kafka"] == "connected"


def test_a_healthy_worker_answers_200_on_both(live: Live) -> None:
    for _ in range(2):
        answers = live.both()
        assert answers["/healthz"][0] == 200, answers
        assert answers["/healthz"][1]["status"] == "alive"
        assert answers["/healthz"][1]["bound_s"] == STALL_S
        assert answers["/readyz"] == (
            200,
            {
                "status": "ready",
                "reason": "serving",
                "checks": {
                    "models": "loaded",
                    "kafka": "connected",
                    "assignment": "1 partition",
                    "loop": "alive",
                    "group": "stable",
                },
            },
        )
    assert live.published() == live.n_sent


def test_a_model_that_never_returns_is_left_out_and_the_loop_stays_alive(live: Live) -> None:
    model = live.worker.model_set.models[0]
    plain = model._predictor
    release = threading.Event()

    def never_returns(X: np.ndarray) -> np.ndarray:
        release.wait()
        return plain(X)

    model._predictor = never_returns
    degraded_before = live.registry.get_sample_value("streamfuse_events_degraded_total") or 0.0
    try:
        live.send(10)
        wait_for(lambda: live.published() >= live.n_sent, timeout=30, what="10 more published")
        degraded = live.registry.get_sample_value("streamfuse_events_degraded_total") or 0.0
        healthz = ask(live.base + "/healthz")
    finally:
        model._predictor = plain
        release.set()
    assert degraded - degraded_before == 10  # published without the stuck model
    assert healthz[0] == 200, healthz


def test_a_stuck_loop_fails_healthz_while_metrics_still_answer(live: Live) -> None:
    combiner = live.worker.serving.active.combiner
    entered, release = threading.Event(), threading.Event()
    plain = combiner.combine

    def never_returns(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait()
        return plain(*args, **kwargs)

    combiner.combine = never_returns
    try:
        live.send(5)
        assert entered.wait(30), "the strategy was never called"
        wait_for(lambda: ask(live.base + "/healthz")[0] == 503, timeout=30, what="/healthz 503")
        healthz, readyz = live.both().values()
        with urllib.request.urlopen(live.base + "/metrics", timeout=5) as response:
            metrics = response.status, response.read()
    finally:
        del combiner.combine  # the class's own method again
        release.set()
    assert healthz[1]["status"] == "stalled"
    assert healthz[1]["last_turn_s_ago"] > STALL_S
    assert "the loop is blocked" in healthz[1]["reason"]
    assert readyz[0] == 503 and readyz[1]["checks"]["loop"] == "stalled"
    assert metrics[0] == 200 and b"streamfuse_events_published_total" in metrics[1]
    # once the strategy returns, the loop turns again and the batch is delivered
    wait_for(lambda: ask(live.base + "/healthz")[0] == 200, timeout=30, what="/healthz 200 again")
    wait_for(lambda: live.published() >= live.n_sent, timeout=30, what="the stuck batch delivered")
