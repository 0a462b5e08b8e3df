"""The metrics port: the exposition at /metrics, and at / a page saying where to look next."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry

from worker.metrics import Metrics
from worker.service.http import serve_metrics


def test_the_landing_page_points_to_metrics_dashboard_alerts_and_report(
    registry: CollectorRegistry,
) -> None:
    Metrics(registry).events_published.inc(3)
    server = serve_metrics(registry, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/html")
            page = response.read().decode()
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            assert "streamfuse_events_published_total 3.0" in response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'href="/metrics"' in page
    assert 'href="/healthz"' in page and 'href="/readyz"' in page
    assert "/consoles/streamfuse.html" in page
    assert "deploy/prometheus/alerts.yml" in page
    assert f"streamfuse report --url {base}/metrics" in page
