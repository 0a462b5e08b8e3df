"""Live accuracy end to end: broker, worker, and Debian's Prometheus server scraping it.

The active strategy's rolling accuracy, read back through the Prometheus query API, must equal
scikit-learn's accuracy_score on the same predictions over the same window.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.metrics import accuracy_score

from model_store import ModelStore
from tests.support.kafka import Broker, wait_for
from tests.support.prometheus import Prometheus, start_prometheus
from tests.support.worker import WorkerProcess, produce, write_config
from worker.tools.produce import dataset_events

pytestmark = pytest.mark.kafka


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def _metric(text: str, name: str, labels: str = "") -> float | None:
    for line in text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], str]]:
    """Start Debian's Prometheus (the repo's local config and rules) scraping a port."""
    started: list[Prometheus] = []

    def start(target_port: int) -> str:
        started.append(start_prometheus(tmp_path, target_port))
        return started[-1].url

    yield start
    for server in started:
        server.stop()


def _query(url: str, expr: str) -> float | None:
    body = json.loads(_get(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_reports_the_same_rolling_accuracy_as_sklearn(
    kafka: Broker, topics, group_factory, tmp_path: Path, prometheus
) -> None:
    from worker.tools.train import train

    store_dir = tmp_path / "model-store"
    train("digits", store_dir, seed=0, progress=False)
    t = topics()
    config = write_config(
        tmp_path / "c.yaml",
        store=store_dir,
        bootstrap=kafka.bootstrap,
        topics=t,
        group=group_factory("prom"),
        shadows=("hard_vote", "hedge"),
        labels={"window": 200},
    )
    port = int(__import__("yaml").safe_load(config.read_text())["metrics"]["port"])
    prom = prometheus(port)
    worker = WorkerProcess(config, tmp_path / "w.log").start()
    try:
        worker.wait_assigned()
        events, labels = dataset_events(ModelStore(store_dir), "rf", "digit")
        n = len(events)
        produce(
            kafka.bootstrap,
            t.input,
            [orjson.dumps(e) for e in events],
            [e["id"].encode() for e in events],
        )
        out = kafka.consume_all(t.output, n, timeout=120)
        produce(
            kafka.bootstrap,
            t.labels,
            [orjson.dumps(d) for d in labels],
            [d["id"].encode() for d in labels],
        )
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        wait_for(
            lambda: _metric(_get(metrics_url), "streamfuse_labels_joined_total") == n,
            timeout=120,
            what="every label to be joined",
        )
        expr = 'streamfuse_rolling_metric{scope="strategy",name="soft_vote",metric="accuracy"}'
        exported = _metric(
            _get(metrics_url),
            "streamfuse_rolling_metric",
            '{metric="accuracy",name="soft_vote",scope="strategy"}',
        )
        assert exported is not None
        value = wait_for(
            lambda: (v := _query(prom, expr)) is not None and v == exported and v,
            timeout=60,
            what="Prometheus to scrape the rolling accuracy",
        )
    finally:
        worker.stop()
    # The same window offline: the last 200 labelled events, in label order.
    predicted = {orjson.loads(r.value)["id"]: orjson.loads(r.value)["prediction"] for r in out}
    window = labels[-200:]
    expected = accuracy_score([d["label"] for d in window], [predicted[d["id"]] for d in window])
    print(f"rolling accuracy: Prometheus {value:.6f}, sklearn {expected:.6f} over {len(window)}")
    assert value == pytest.approx(expected, abs=1e-12)
    assert np.isfinite(value)
