"""Faulty models inside a real worker (in-process, against the broker): one raises, one sleeps
past its timeout, one returns NaN, one the wrong shape. Outputs are flagged degraded, the
``on_model_error`` policy is honoured (renormalize vs fail, min_models), and each failure is
counted in ``streamfuse_model_errors_total{model,kind}``."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

import combiners
from model_store import ModelStore
from tests.faults.support import Tail
from tests.support.kafka import wait_for
from tests.support.scenario import Scenario
from tests.support.worker import events, produce
from worker.config import load_settings
from worker.service.worker import Worker

pytestmark = pytest.mark.kafka

MODELS = ("rf", "hgb", "linear", "mlp")
N_EVENTS = 300
TIMEOUT_MS = 150

Predict = Callable[[np.ndarray], np.ndarray]


def raises(fn: Predict) -> Predict:
    def predict(X: np.ndarray) -> np.ndarray:
        raise RuntimeError("injected model failure")

    return predict


def sleeps(fn: Predict) -> Predict:
    def predict(X: np.ndarray) -> np.ndarray:
        time.sleep(4 * TIMEOUT_MS / 1000)
        return fn(X)

    return predict


def nan(fn: Predict) -> Predict:
    return lambda X: fn(X) * np.nan


def wrong_shape(fn: Predict) -> Predict:
    return lambda X: fn(X)[:, :1]


FAULT_KIND = {raises: "exception", sleeps: "timeout", nan: "nonfinite", wrong_shape: "shape"}


@dataclass
class Run:
    ids: list[str]
    X: np.ndarray
    published: list[dict[str, Any]]
    dead: list[Any]
    registry: CollectorRegistry

    def errors(self, model: str, kind: str) -> float:
        value = self.registry.get_sample_value(
            "streamfuse_model_errors_total", {"model": model, "kind": kind}
        )
        return value or 0.0

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def run_with_faults(
    s: Scenario, faults: dict[str, Callable[[Predict], Predict]], policy: dict[str, Any]
) -> Run:
    t = s.topics
    X = np.resize(s.rows, (N_EVENTS, s.rows.shape[1]))
    ids, values = events(X, "mf")
    produce(s.kafka.bootstrap, t.input, values)
    config = s.config(
        shadows=(),
        batch={"max_events": 100, "max_wait_ms": 20},
        on_model_error={"timeout_ms": TIMEOUT_MS, **policy},
    )
    registry = CollectorRegistry()
    worker = Worker(load_settings(config), registry)
    for name, fault in faults.items():
        model = worker.model_set.models[MODELS.index(name)]
        model._predictor = fault(model._predictor)
    out = Tail(s.kafka.bootstrap, t.output)
    dlq = Tail(s.kafka.bootstrap, t.dead_letter)
    thread = threading.Thread(target=worker.run, daemon=True)
    with worker_log() as lines:
        thread.start()
        try:
            wait_for(
                lambda: out.count + dlq.count >= N_EVENTS,
                timeout=90,
                what=f"{N_EVENTS} events published or dead-lettered",
            )
            time.sleep(0.5)  # nothing more may come
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; the worker's log:\n" + "\n".join(lines)) from None
        finally:
            worker.stop()
            thread.join(30)
            out.close()
            dlq.close()
    assert not thread.is_alive(), "the worker did not stop"
    published = [orjson.loads(r.value) for r in out.records]
    return Run(ids, X, published, list(dlq.records), registry)


@contextlib.contextmanager
def worker_log() -> Iterator[list[str]]:
    """The in-process worker's INFO log lines (a subprocess worker writes them to its log)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(f"{record.name}: {record.getMessage()}")  # type: ignore[method-assign]
    logger = logging.getLogger("streamfuse")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def offline(store: Path, X: np.ndarray, available: np.ndarray) -> np.ndarray:
    """soft_vote over the available models only, computed outside the worker."""
    s = ModelStore(store)
    P = np.stack([s.load(n).predict_outputs(X) for n in MODELS])
    P[~available] = np.nan
    stored = s.load_strategy("soft_vote")
    return combiners.load_state(stored.meta, stored.arrays).combine(P, available=available)


def test_three_faulty_models_renormalize_over_the_one_left(
    scenario: Callable[..., Scenario], figures, library: str
) -> None:
    faults = {"rf": raises, "hgb": sleeps, "linear": nan}
    s = scenario(group="mf")
    run = run_with_faults(s, faults, {"policy": "renormalize", "min_models": 1})
    counts = {
        f"{m}/{k}": run.errors(m, k)
        for m in MODELS
        for k in ("exception", "timeout", "busy", "nonfinite", "shape")
        if run.errors(m, k)
    }
    figures(
        events_sent=N_EVENTS,
        published=len(run.published),
        dead_lettered=len(run.dead),
        degraded=run.sample("streamfuse_events_degraded_total"),
        model_errors=counts,
    )
    assert sorted(d["id"] for d in run.published) == sorted(run.ids)
    assert not run.dead
    assert all(d["degraded"] for d in run.published)
    for d in run.published:
        assert d["models"]["rf"]["error"] == "exception"
        assert d["models"]["hgb"]["error"] in ("timeout", "busy")
        assert d["models"]["linear"]["error"] == "nonfinite"
        assert "error" not in d["models"]["mlp"]
    available = np.array([False, False, False, True])
    expected = offline(s.store, run.X, available)
    row = {i: k for k, i in enumerate(run.ids)}
    got = np.array([d["scores"] for d in run.published])
    np.testing.assert_allclose(got, expected[[row[d["id"]] for d in run.published]], atol=1e-12)
    n_batches = run.sample("streamfuse_batch_size_count")
    assert run.errors("rf", "exception") == n_batches
    assert run.errors("linear", "nonfinite") == n_batches
    assert run.errors("hgb", "timeout") >= 1
    assert run.errors("hgb", "timeout") + run.errors("hgb", "busy") == n_batches
    assert run.errors("mlp", "exception") == 0
    assert run.sample("streamfuse_events_degraded_total") == N_EVENTS
    assert run.sample("streamfuse_events_published_total") == N_EVENTS


@pytest.mark.parametrize(
    ("faults", "policy", "min_models", "published"),
    [
        ({"rf": raises, "linear": wrong_shape}, "renormalize", 2, True),
        ({"rf": raises, "linear": wrong_shape}, "renormalize", 3, False),
        ({"mlp": nan}, "fail", 1, False),
    ],
    ids=["renormalize-min2-two-left", "renormalize-min3-two-left", "fail-one-nan"],
)
def test_policy_decides_between_degraded_output_and_dead_letter(
    scenario: Callable[..., Scenario],
    figures,
    faults: dict[str, Callable[[Predict], Predict]],
    policy: str,
    min_models: int,
    published: bool,
) -> None:
    s = scenario(group="mp")
    run = run_with_faults(s, faults, {"policy": policy, "min_models": min_models})
    n_batches = run.sample("streamfuse_batch_size_count")
    figures(
        events_sent=N_EVENTS,
        policy=policy,
        min_models=min_models,
        published=len(run.published),
        dead_lettered=len(run.dead),
        degraded=run.sample("streamfuse_events_degraded_total"),
    )
    for name, fault in faults.items():
        assert run.errors(name, FAULT_KIND[fault]) == n_batches, (name, FAULT_KIND[fault])
    if published:
        assert sorted(d["id"] for d in run.published) == sorted(run.ids) and not run.dead
        assert all(d["degraded"] for d in run.published)
        available = np.array([m not in faults for m in MODELS])
        expected = offline(s.store, run.X, available)
        row = {i: k for k, i in enumerate(run.ids)}
        got = np.array([d["scores"] for d in run.published])
        np.testing.assert_allclose(got, expected[[row[d["id"]] for d in run.published]], atol=1e-12)
        assert run.sample("streamfuse_events_degraded_total") == N_EVENTS
        return
    assert not run.published
    assert len(run.dead) == N_EVENTS
    assert sorted(orjson.loads(r.value)["id"] for r in run.dead) == sorted(run.ids)
    n_ok = len(MODELS) - len(faults)
    for r in run.dead:
        headers = {k: v.decode() for k, v in r.headers}
        assert headers["streamfuse.stage"] == "predict"
        reason = headers["streamfuse.error"]
        assert f"{n_ok} of {len(MODELS)} models answered" in reason, reason
        for name, fault in faults.items():
            assert f"{name}: {FAULT_KIND[fault]}" in reason, reason
    assert run.sample("streamfuse_events_dead_lettered_total", stage="predict") == N_EVENTS
    assert run.sample("streamfuse_events_published_total") == 0
