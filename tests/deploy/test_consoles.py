"""The console dashboard (Prometheus console templates): valid PromQL over exported metrics,
the issue's panels, and the same metrics as the Grafana dashboard. Rendering it in a browser
against a live worker is tests/deploy/test_live.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.dashboards import (
    CONSOLE,
    console_chart_queries,
    console_queries,
    exported_names,
    grafana_queries,
    metric_names,
)


def test_every_metric_of_the_console_is_exported() -> None:
    used = metric_names(console_queries())
    assert used and used <= exported_names(), sorted(used - exported_names())


def test_the_console_and_grafana_show_the_same_metrics() -> None:
    assert metric_names(console_queries()) == metric_names(grafana_queries())


def test_the_console_has_the_issue_panels() -> None:
    text = CONSOLE.read_text()
    charts = console_chart_queries()
    assert len(charts) == text.count('<code class="sf-q"') and len(charts) >= 11
    for needle in [
        "rate(streamfuse_events_consumed_total",  # throughput in
        "rate(streamfuse_events_published_total",  # and out
        "sum by (stage) (rate(streamfuse_events_dead_lettered_total",
        "rate(streamfuse_events_degraded_total",
        "streamfuse_consumer_lag",
        "histogram_quantile(0.5, sum by (le) (rate(streamfuse_end_to_end_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(streamfuse_end_to_end_latency_seconds_bucket",
        "sum by (le, model) (rate(streamfuse_model_predict_seconds_bucket",
        'streamfuse_rolling_metric{scope="model", metric="accuracy"}',
        'streamfuse_rolling_metric{scope="strategy", metric="accuracy"}',
        "streamfuse_model_info",
        # group membership (issue 22): state, partitions, generation, time in the state
        "sum by (state) (streamfuse_group_state)",
        "max by (instance) (streamfuse_assigned_partitions)",
        "max by (instance) (streamfuse_labels_partitions_missing)",
        "max by (instance) (streamfuse_group_generation)",
        "streamfuse_group_state_age_seconds * on (job, instance) group_left (state)",
    ]:
        assert needle in text, needle


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
def test_the_console_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [{"record": f"console:query_{i}", "expr": q} for i, q in enumerate(console_queries())]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "console", "rules": rules}]}))
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout
