"""The worker's exposition passes ``promtool check metrics``; BatchHistogram matches Histogram."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from worker.metrics import (
    DEAD_LETTER_STAGES,
    LATENCY_BUCKETS,
    MODEL_ERROR_KINDS,
    RELOAD_OUTCOMES,
    BatchHistogram,
    Metrics,
)


def observed_metrics() -> Metrics:
    m = Metrics(CollectorRegistry())
    m.events_consumed.labels("features").inc(10)
    m.events_published.inc(8)
    m.events_dead_lettered.labels("decode").inc(2)
    m.events_degraded.inc(3)
    m.batch_size.observe(10)
    m.model_predict_seconds.labels("rf").observe(0.002)
    m.model_errors.labels("mlp", "timeout").inc()
    m.combine_seconds.labels("soft_vote").observe(0.0001)
    m.end_to_end_latency.observe_many(np.array([0.001, 0.02, 0.5, np.nan]))
    m.batch_processing_seconds.observe(0.01)
    m.consumer_lag.labels("features", "0").set(5)
    m.rolling_metric.labels("model", "rf", "accuracy").set(0.9)
    m.rolling_metric.labels("strategy", "soft_vote", "log_loss").set(0.3)
    m.labels_joined.inc(4)
    m.labels_unmatched.inc()
    m.labels_evicted.inc()
    m.set_model_version("rf", 2)
    m.set_model_version("rf", 3, previous=2)
    m.model_reloads.labels("rf", "swapped").inc()
    m.transactions_aborted.inc()
    m.transactions_committed.inc()
    m.strategy_errors.labels("hedge").inc()
    m.feature_drift.labels("3", "psi").set(0.1)
    m.feature_drift.labels("3", "ks").set(float("nan"))
    m.out_of_range_ratio.labels("3").set(0.0)
    m.prediction_drift.labels("strategy", "soft_vote").set(0.01)
    m.estimated_metric.labels("strategy", "soft_vote", "accuracy").set(0.9)
    m.set_strategy_weights("hedge", ["rf", "mlp"], [0.25, 0.75])
    m.strategy_promotions.labels("hedge").inc()
    m.set_active_strategy("hedge")
    return m


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
def test_promtool_finds_nothing_to_report() -> None:
    exposition = generate_latest(observed_metrics().registry)
    out = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == b"" and out.stderr.strip() == b""


def test_model_info_keeps_only_the_served_version() -> None:
    registry = observed_metrics().registry
    assert registry.get_sample_value("streamfuse_model_info", {"model": "rf", "version": "3"}) == 1
    assert (
        registry.get_sample_value("streamfuse_model_info", {"model": "rf", "version": "2"}) is None
    )


def buckets(registry: CollectorRegistry, name: str) -> dict[str, float]:
    family = next(f for f in registry.collect() if f.name == name)
    return {
        s.name.removeprefix(name) + s.labels.get("le", ""): s.value
        for s in family.samples
        if not s.name.endswith("_created")
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_observe_many_equals_observe_one_by_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [
            10 ** rng.uniform(-5, 1.5, 500),  # below, inside and above the bounds
            np.array(LATENCY_BUCKETS),  # exactly on each bound (le is inclusive)
            np.array([0.0, -1.0]),
        ]
    )
    batch_registry, plain_registry = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("t_seconds", "t", LATENCY_BUCKETS, registry=batch_registry)
    plain = Histogram("t_seconds", "t", buckets=LATENCY_BUCKETS, registry=plain_registry)
    for chunk in np.array_split(values, 7):
        batch.observe_many(chunk)
    for v in values.tolist():
        plain.observe(v)
    got, want = buckets(batch_registry, "t_seconds"), buckets(plain_registry, "t_seconds")
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12), key


# -- series that exist from the start ------------------------------------------------------------

MODELS, STRATEGIES = ["rf", "mlp"], ["soft_vote", "hedge"]
ROLLING = [("model", "rf", "accuracy"), ("strategy", "soft_vote", "accuracy")]


def initialised() -> Metrics:
    m = Metrics(CollectorRegistry())
    m.initialise(input_topic="features", models=MODELS, strategies=STRATEGIES, rolling=ROLLING)
    return m


def test_initialise_exports_every_known_label_value_at_zero() -> None:
    r = initialised().registry
    assert r.get_sample_value("streamfuse_events_consumed_total", {"topic": "features"}) == 0
    for stage in DEAD_LETTER_STAGES:
        assert r.get_sample_value("streamfuse_events_dead_lettered_total", {"stage": stage}) == 0
    for model in MODELS:
        for kind in MODEL_ERROR_KINDS:
            value = r.get_sample_value(
                "streamfuse_model_errors_total", {"model": model, "kind": kind}
            )
            assert value == 0
        for outcome in RELOAD_OUTCOMES:
            labels = {"model": model, "outcome": outcome}
            assert r.get_sample_value("streamfuse_model_reloads_total", labels) == 0
        labels = {"model": model, "le": "+Inf"}
        assert r.get_sample_value("streamfuse_model_predict_seconds_bucket", labels) == 0
    for strategy in STRATEGIES:
        labels = {"strategy": strategy}
        assert r.get_sample_value("streamfuse_strategy_errors_total", labels) == 0
        assert r.get_sample_value("streamfuse_combine_seconds_count", labels) == 0
    for scope, name, metric in ROLLING:
        labels = {"scope": scope, "name": name, "metric": metric}
        assert np.isnan(r.get_sample_value("streamfuse_rolling_metric", labels))  # type: ignore[arg-type]
    assert r.get_sample_value("streamfuse_active_strategy_info", {"strategy": "soft_vote"}) == 1
    assert r.get_sample_value("streamfuse_active_strategy_info", {"strategy": "hedge"}) is None


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
def test_an_initialised_exposition_passes_promtool() -> None:
    m = initialised()
    m.set_heldout([("strategy", "soft_vote", "accuracy", 0.98)])
    out = subprocess.run(
        ["promtool", "check", "metrics"],
        input=generate_latest(m.registry),
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out


def test_set_heldout_replaces_the_previous_scores(registry: CollectorRegistry) -> None:
    m = Metrics(registry)
    m.set_heldout([("model", "rf", "accuracy", 0.9), ("model", "rf", "log_loss", 0.3)])
    m.set_heldout([("model", "rf", "accuracy", 0.95)])
    r = m.registry
    labels = {"scope": "model", "name": "rf"}
    assert r.get_sample_value("streamfuse_heldout_metric", {**labels, "metric": "accuracy"}) == 0.95
    assert r.get_sample_value("streamfuse_heldout_metric", {**labels, "metric": "log_loss"}) is None
