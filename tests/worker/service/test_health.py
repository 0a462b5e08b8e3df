"""/healthz and /readyz: the verdicts of :class:`Health` on a hand-driven clock, the bound
derived from the config, and the metrics server answering them (no broker: the same endpoints
on a real worker are in tests/integration/test_health.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from worker.config import settings_from_dict
from worker.errors import ConfigError
from worker.metrics import Metrics
from worker.service.health import RELOAD_ALLOWANCE_S, Health, stall_bound_s
from worker.service.http import serve_metrics

MINIMAL: dict[str, Any] = {"models": [{"name": "rf"}], "strategy": {"name": "soft_vote"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def running(clock: Clock, bound: float = 10.0) -> Health:
    health = Health(bound, clock)
    health.set_phase("connecting")
    health.set_phase("running")
    return health


def test_the_bound_comes_from_the_timeouts_unless_given() -> None:
    default = settings_from_dict(MINIMAL, environ={})
    assert stall_bound_s(default) == pytest.approx(1.0 + 0.02 + 2 * 30.0 + RELOAD_ALLOWANCE_S)
    slow = settings_from_dict(
        {
            **MINIMAL,
            "kafka": {"watchdog_s": 5},
            "on_model_error": {"timeout_ms": 4000},
            "batch": {"max_wait_ms": 500},
        },
        environ={},
    )
    assert stall_bound_s(slow) == pytest.approx(4.0 + 0.5 + 10.0 + RELOAD_ALLOWANCE_S)
    given = settings_from_dict(MINIMAL, environ={"STREAMFUSE_METRICS__LOOP_STALL_S": "7.5"})
    assert stall_bound_s(given) == 7.5
    with pytest.raises(ConfigError, match=r"metrics\.loop_stall_s"):
        settings_from_dict({**MINIMAL, "metrics": {"loop_stall_s": 0}}, environ={})


def test_starting_is_neither_alive_nor_ready_and_says_which_step() -> None:
    health = Health(10.0, Clock())
    live, ready = health.liveness(), health.readiness()
    assert (live.status, live.body["status"]) == (503, "starting")
    assert "loading the models" in live.body["reason"]
    assert ready.status == 503 and ready.body["checks"]["models"] == "loading"
    assert ready.body["reason"] == "loading the models"
    health.set_phase("connecting")
    ready = health.readiness()
    assert ready.status == 503 and ready.body["reason"] == "connecting to Kafka"
    assert ready.body["checks"]["models"] == "loaded"
    assert ready.body["checks"]["kafka"] == "connecting"
    with pytest.raises(ValueError, match="unknown phase"):
        health.set_phase("dancing")


def test_running_waits_for_the_assignment_and_takes_none_as_an_answer() -> None:
    clock = Clock()
    health = running(clock)
    assert health.liveness().status == 200
    ready = health.readiness()
    assert ready.status == 503
    assert ready.body["reason"] == "waiting for the group to assign partitions"
    health.assigned(0)  # more members than partitions: legitimately idle
    ready = health.readiness()
    assert ready.status == 200 and ready.body["checks"]["assignment"].startswith("no partitions")
    health.assigned(3)
    ready = health.readiness()
    assert ready.status == 200
    assert ready.body["checks"] == {
        "models": "loaded",
        "kafka": "connected",
        "assignment": "3 partitions",
        "loop": "alive",
    }


def test_a_loop_that_stops_beating_fails_both_and_recovers_when_it_beats_again() -> None:
    clock = Clock()
    health = running(clock, bound=10.0)
    health.assigned(1)
    clock.now += 9.9
    assert health.liveness().status == 200
    clock.now += 0.2
    live = health.liveness()
    assert live.status == 503 and live.body["status"] == "stalled"
    assert "no loop turn for 10.1 s (bound 10 s)" in live.body["reason"]
    assert live.body["last_turn_s_ago"] == pytest.approx(10.1)
    ready = health.readiness()
    assert ready.status == 503 and ready.body["checks"]["loop"] == "stalled"
    health.heartbeat.beat()
    assert health.liveness().status == 200 and health.readiness().status == 200
    assert health.liveness().body["turns"] == 2  # set_phase("running") and this one


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (lambda h: h.heartbeat.polled("broker gone"), "the last poll failed: broker gone"),
        (lambda h: h.heartbeat.delivered("retry"), "the last delivery failed: retry"),
        (lambda h: h.brokers_reached("NoBrokersAvailable"), "the brokers did not answer"),
    ],
    ids=["poll", "delivery", "brokers"],
)
def test_a_failing_poll_delivery_or_broker_is_not_ready_but_alive(report, expected: str) -> None:
    health = running(Clock())
    health.assigned(2)
    report(health)
    ready = health.readiness()
    assert ready.status == 503 and ready.body["reason"].startswith(expected)
    assert health.liveness().status == 200  # restarting would not bring the broker back
    health.heartbeat.polled()
    health.heartbeat.delivered()
    health.brokers_reached(None)
    assert health.readiness().status == 200


def test_stopping_is_alive_but_not_ready_and_stopped_is_neither() -> None:
    health = running(Clock())
    health.assigned(1)
    health.set_phase("stopping")
    assert health.liveness().status == 200
    ready = health.readiness()
    assert ready.status == 503 and "stopping" in ready.body["reason"]
    health.set_phase("stopped")
    assert health.liveness().status == 503 and health.readiness().status == 503


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_the_metrics_server_answers_both_verdicts_in_json_beside_the_metrics(
    registry: CollectorRegistry,
) -> None:
    Metrics(registry).events_published.inc(2)
    clock = Clock()
    health = Health(10.0, clock)
    server = serve_metrics(registry, "127.0.0.1", 0, health)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        seen = {path: get(base + path) for path in ("/healthz", "/readyz")}
        health.set_phase("running")
        health.assigned(1)
        ok = {path: get(base + path) for path in ("/healthz", "/readyz")}
        clock.now += 11
        stalled = get(base + "/healthz")
        metrics = get(base + "/metrics")
    finally:
        server.shutdown()
        server.server_close()
    for status, content_type, _ in seen.values():
        assert status == 503 and content_type == "application/json"
    assert json.loads(seen["/healthz"][2])["status"] == "starting"
    assert json.loads(seen["/readyz"][2])["reason"] == "loading the models"
    assert [status for status, _, _ in ok.values()] == [200, 200]
    assert json.loads(ok["/readyz"][2])["status"] == "ready"
    assert stalled[0] == 503 and json.loads(stalled[2])["status"] == "stalled"
    assert metrics[0] == 200 and b"streamfuse_events_published_total 2.0" in metrics[2]
