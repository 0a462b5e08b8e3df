"""Drift end to end: broker, worker, and Debian's Prometheus with the repo's alert rules.

One stream of the breast_cancer test rows: the first 300 events as they are, then 300 whose
feature 3 is a constant (a broken upstream column, still inside the training range). The
worker's feature 3 gauges rise while the others stay under the alert's bounds, and the
StreamfuseFeatureDrift rule fires in a real Prometheus server for feature 3 only. The rule is
the repo's, with its ``for: 10m`` cut to 1 s so the test need not wait ten minutes (the
promtool tests in tests/deploy/test_alerts.py cover the ``for``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.kafka import wait_for
from tests.support.prometheus import ALERTS_FILE, get, start_prometheus
from tests.support.worker import free_port, produce

pytestmark = pytest.mark.kafka

ALERT = "StreamfuseFeatureDrift"
N_HALF = 300


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(get(url))
        for s in family.samples
    }


def _drift(samples: dict, statistic: str) -> dict[str, float]:  # type: ignore[type-arg]
    return {
        dict(labels)["feature"]: value
        for (name, labels), value in samples.items()
        if name == "streamfuse_feature_drift" and dict(labels)["statistic"] == statistic
    }


def _rules_without_waiting(path: Path) -> Path:
    doc = yaml.safe_load(ALERTS_FILE.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == ALERT:
                rule["for"] = "1s"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_constant_feature_raises_its_gauge_and_fires_the_alert(scenario) -> None:
    s = scenario(group="drift")
    t = s.topics
    port = free_port()
    config = s.config(
        metrics={"host": "127.0.0.1", "port": port},
        # Gauges after every batch (by default at most every second), so that they cover every
        # published event when the published counter says so.
        drift={"window": N_HALF, "min_events": 100, "interval_s": 0},
    )
    url = f"http://127.0.0.1:{port}/metrics"
    X = np.tile(s.rows, (math.ceil(2 * N_HALF / len(s.rows)), 1))[: 2 * N_HALF].copy()
    constant = float(np.median(s.rows[:, 3]))
    X[N_HALF:, 3] = constant
    values = [orjson.dumps({"id": f"d-{i}", "features": row}) for i, row in enumerate(X.tolist())]
    keys = [f"d-{i}".encode() for i in range(len(values))]

    worker = s.worker(config, "w.log")
    prometheus = None
    try:
        worker.wait_assigned()
        prometheus = start_prometheus(
            s.tmp_path, port, rules=_rules_without_waiting(s.tmp_path / "r.yml")
        )

        def published(n: int):  # type: ignore[no-untyped-def]
            def done() -> dict | None:  # type: ignore[type-arg]
                samples = _samples(url)
                return (
                    samples if samples.get(("streamfuse_events_published_total", ())) == n else None
                )

            return done

        produce(s.kafka.bootstrap, t.input, values[:N_HALF], keys[:N_HALF])
        before = wait_for(published(N_HALF), timeout=120, what="the first half's predictions")
        produce(s.kafka.bootstrap, t.input, values[N_HALF:], keys[N_HALF:])
        after = wait_for(published(2 * N_HALF), timeout=120, what="the second half's predictions")

        prom = prometheus
        firing = wait_for(
            lambda: prom.query(f'ALERTS{{alertname="{ALERT}", alertstate="firing"}}'),
            timeout=60,
            what=f"{ALERT} to fire",
        )
        assert [a["metric"]["feature"] for a in firing] == ["3"]
        assert prom.value(
            'streamfuse_feature_drift{feature="3", statistic="psi"}'
        ) == pytest.approx(_drift(after, "psi")["3"])
    finally:
        worker.stop()
        if prometheus is not None:
            prometheus.stop()

    psi_before, ks_before = _drift(before, "psi"), _drift(before, "ks")
    psi_after, ks_after = _drift(after, "psi"), _drift(after, "ks")
    print(
        f"feature 3: PSI {psi_before['3']:.3f} -> {psi_after['3']:.3f}, "
        f"KS {ks_before['3']:.3f} -> {ks_after['3']:.3f}; the others' highest after: "
        f"PSI {max(v for f, v in psi_after.items() if f != '3'):.3f}, "
        f"KS {max(v for f, v in ks_after.items() if f != '3'):.3f}"
    )
    assert len(psi_after) == len(ks_after) == s.rows.shape[1] == 30
    assert ks_before["3"] < 0.2 and psi_after["3"] > 2.0 and ks_after["3"] > 0.4
    others = [f for f in ks_after if f != "3"]
    assert all(ks_after[f] < 0.2 for f in others), {f: ks_after[f] for f in others}
    assert all(ks_before[f] < 0.2 for f in ks_before), ks_before
    # Inside the training range, so the range check alone would not have seen it.
    assert after[("streamfuse_out_of_range_ratio", (("feature", "3"),))] == 0.0
    labels = (("metric", "accuracy"), ("name", "soft_vote"), ("scope", "strategy"))
    estimate = after[("streamfuse_estimated_metric", labels)]
    assert 0.5 <= estimate <= 1.0
