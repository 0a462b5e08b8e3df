"""``streamfuse report``: scrape a live /metrics endpoint and write the HTML/SVG report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from worker.metrics import LATENCY_BUCKETS, Metrics
from worker.tools.report import quantile, scrape, write_report


@pytest.fixture
def served(registry: CollectorRegistry) -> Iterator[tuple[Metrics, str]]:
    metrics = Metrics(registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    try:
        yield metrics, f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        thread.join(5)


def test_scrape_then_report(served: tuple[Metrics, str], tmp_path: Path) -> None:
    metrics, url = served
    samples = []
    for step in range(3):
        metrics.rolling_metric.labels("model", "rf", "accuracy").set(0.8 + step / 100)
        metrics.rolling_metric.labels("strategy", "soft_vote", "accuracy").set(0.9)
        metrics.end_to_end_latency.observe_many(np.full(10, 0.003 * (step + 1)))
        samples.append(scrape(url))
    assert samples[-1]["rolling"]["model/rf/accuracy"] == pytest.approx(0.82)
    assert samples[-1]["latency_buckets"][-1] == [float("inf"), 30.0]
    path = write_report(samples, tmp_path / "report.html")
    text = path.read_text()
    for svg in text.split("<svg")[1:]:  # each chart is well-formed SVG
        ElementTree.fromstring("<svg" + svg.split("</svg>")[0] + "</svg>")
    assert "Rolling accuracy" in text and "model/rf" in text and "strategy/soft_vote" in text
    assert text.count("<polyline") == 2 + 3  # two rolling series, three latency quantiles


def test_the_report_charts_drift_and_the_estimate(
    served: tuple[Metrics, str], tmp_path: Path
) -> None:
    metrics, url = served
    metrics.initialise(input_topic="f", models=["rf"], strategies=["soft_vote"])
    samples = []
    for step in range(3):
        for feature in range(7):
            metrics.feature_drift.labels(str(feature), "psi").set(feature * (step + 1) / 10)
            metrics.feature_drift.labels(str(feature), "ks").set(0.05)
        metrics.estimated_metric.labels("strategy", "soft_vote", "accuracy").set(0.9 - step / 10)
        metrics.rolling_metric.labels("strategy", "soft_vote", "accuracy").set(0.95)
        samples.append(scrape(url))
    assert samples[-1]["drift"]["6/psi"] == pytest.approx(1.8)
    assert samples[-1]["active"] == "soft_vote"
    write_report(samples, tmp_path / "report.html", svg_dir=tmp_path / "svg")
    drift = (tmp_path / "svg" / "feature-drift.svg").read_text()
    assert drift.count("<polyline") == 5  # the five highest of seven features
    assert "feature 6 (last 1.8)" in drift and "feature 1 " not in drift
    estimate = (tmp_path / "svg" / "estimated-accuracy.svg").read_text()
    assert "soft_vote estimated (last 0.7)" in estimate and "soft_vote realised" in estimate


def test_quantile_agrees_with_prometheus_interpolation(registry: CollectorRegistry) -> None:
    # 10 observations in (0.001, 0.0025]: the median is halfway through that bucket.
    h = Histogram("h", "h", buckets=LATENCY_BUCKETS, registry=registry)
    for _ in range(10):
        h.observe(0.002)
    buckets = [
        [float(s.labels["le"]), s.value]
        for s in next(iter(h.collect())).samples
        if s.name == "h_bucket"
    ]
    assert quantile(0.5, buckets) == pytest.approx(0.00175)
    assert np.isnan(quantile(0.5, [[1.0, 0.0], [float("inf"), 0.0]]))


def test_empty_report(tmp_path: Path) -> None:
    assert "no data" in write_report([], tmp_path / "r.html").read_text()


def test_weights_that_move_and_the_promotion_moment(
    served: tuple[Metrics, str], tmp_path: Path
) -> None:
    metrics, url = served
    samples = []
    for step in range(4):
        metrics.set_strategy_weights("hedge", ["rf", "mlp"], [0.5 + step / 10, 0.5 - step / 10])
        metrics.set_strategy_weights("soft_vote", ["rf", "mlp"], [0.5, 0.5])  # never moves
        metrics.rolling_metric.labels("strategy", "hedge", "accuracy").set(0.7 + step / 20)
        metrics.set_active_strategy("soft_vote" if step < 2 else "hedge")
        samples.append(scrape(url))
    assert samples[0]["active"] == "soft_vote" and samples[-1]["active"] == "hedge"
    assert samples[-1]["weights"]["hedge/rf"] == pytest.approx(0.8)
    text = write_report(samples, tmp_path / "r.html", tmp_path / "svg").read_text()
    assert "Weights of hedge" in text and "Weights of soft_vote" not in text
    assert "now active: hedge" in text
    assert (tmp_path / "svg" / "promotion.svg").exists()
    assert (tmp_path / "svg" / "weights-of-hedge.svg").exists()


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://host/metrics", "/metrics"])
def test_a_metrics_url_that_is_not_http_is_refused_before_it_is_opened(url: str) -> None:
    from worker.errors import StartupError

    with pytest.raises(StartupError, match="must be http:// or https://"):
        scrape(url)
