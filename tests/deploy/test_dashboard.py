"""The dashboard, Prometheus and compose files agree with what the worker exports and runs."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboards import REPO, exported_names, rule_queries
from tests.support.dashboards import grafana_queries as dashboard_queries

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamfuse.json"
# Grafana's variables, replaced by what they expand to so promtool can parse the queries.
GRAFANA_VARS = {"$__rate_interval": "1m", "$metric": "accuracy"}

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")


def test_every_metric_in_the_dashboard_is_exported() -> None:
    exported = exported_names()
    used = {name for expr in dashboard_queries() for name in re.findall(r"streamfuse_\w+", expr)}
    assert used, "no streamfuse metric found in the dashboard"
    assert used <= exported, f"not exported by worker.metrics: {sorted(used - exported)}"


def test_dashboard_covers_the_issue_panels() -> None:
    exprs = "\n".join(dashboard_queries())
    for name in [
        "streamfuse_events_consumed_total",
        "streamfuse_events_published_total",
        "streamfuse_end_to_end_latency_seconds_bucket",
        "streamfuse_model_predict_seconds_bucket",
        "streamfuse_batch_size",
        "streamfuse_events_dead_lettered_total",
        "streamfuse_events_degraded_total",
        "streamfuse_consumer_lag",
        "streamfuse_rolling_metric",
        "streamfuse_model_info",
        "streamfuse_group_state",
        "streamfuse_group_state_age_seconds",
        "streamfuse_group_generation",
        "streamfuse_assigned_partitions",
        "streamfuse_labels_partitions_missing",
    ]:
        assert name in exprs
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(streamfuse_end_to_end" in exprs
    dashboard = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert any(title.startswith("Group membership") for title in rows), rows
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {d["uid"] for d in datasource["datasources"]}
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} <= uids


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no PromQL checker of its own; recording rules are parsed by `check rules`.
    rules = []
    for i, expr in enumerate(dashboard_queries()):
        if expr.startswith("label_values("):  # a Grafana function, not PromQL
            continue
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-local.yml"])
def test_prometheus_config_is_valid(name: str, tmp_path: Path) -> None:
    config = tmp_path / name
    config.write_text((DEPLOY / name).read_text().replace("127.0.0.1:9464", "127.0.0.1:18464"))
    (tmp_path / "prometheus").symlink_to(DEPLOY / "prometheus")  # rule_files are relative
    out = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_queries())} rules found".encode() in out.stdout
    targets = [
        t
        for job in yaml.safe_load(config.read_text())["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    ]
    assert targets == (["worker:9464"] if name == "prometheus.yml" else ["127.0.0.1:18464"])


def test_compose_runs_the_full_stack() -> None:
    compose: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "init", "worker", "producer", "prometheus", "grafana"} <= set(services)
    assert services["init"]["command"][:1] == ["train"]
    assert "/data/streamfuse.yaml" in services["worker"]["command"]
    assert services["worker"]["command"][0] == "run"
    assert "streamfuse produce" in " ".join(services["producer"]["command"])
    mounts = " ".join(services["grafana"]["volumes"] + services["prometheus"]["volumes"])
    for path in (
        "./deploy/grafana/provisioning",
        "./deploy/grafana/dashboards",
        "./deploy/prometheus.yml",
        "./deploy/prometheus",
    ):
        assert path in mounts
        assert (REPO / path).exists()
    assert (REPO / "Dockerfile").exists()


def test_compose_commands_parse_with_the_cli() -> None:
    from worker.cli import build_parser

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    parser = build_parser()
    for name in ("init", "worker"):
        args = parser.parse_args(compose["services"][name]["command"])
        assert args.command in {"train", "run"}
    produce = compose["services"]["producer"]["command"][0]
    argv = shlex.split(produce.split("streamfuse ", 1)[1].split(" ||")[0])
    assert parser.parse_args(argv).command == "produce"
