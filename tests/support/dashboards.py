"""What the dashboards and alert rules query, read from the files in deploy/."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from worker.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
GRAFANA = DEPLOY / "grafana" / "dashboards" / "streamfuse.json"
CONSOLE = DEPLOY / "prometheus" / "consoles" / "streamfuse.html"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# <code class="sf-q" ...>PromQL</code>: a chart's query (console_libraries/streamfuse.lib).
CHART_QUERY = re.compile(r'<code class="sf-q"[^>]*>(.*?)</code>', re.S)
# {{ range query "..." }} and {{ with printf "..." ... | query }}: server-side queries.
TEMPLATE_QUERY = re.compile(r'(?:query|printf) "([^"]*)"')


def exported_names() -> set[str]:
    """Every series name a worker's /metrics can show, from a fresh Metrics."""
    registry = CollectorRegistry()
    Metrics(registry)
    return {
        family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]
    }


def grafana_queries() -> list[str]:
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        exprs.append(var["definition"])
    return exprs


def console_chart_queries(text: str | None = None) -> list[str]:
    source = CONSOLE.read_text() if text is None else text
    return [html.unescape(q).strip() for q in CHART_QUERY.findall(source)]


def console_queries() -> list[str]:
    """The charts' queries, and the side tables' with ``%s`` filled in with a name."""
    text = CONSOLE.read_text()
    found = TEMPLATE_QUERY.findall(text)
    table = [q.replace("%s", "x") for q in found if not q.startswith("%")]  # not "%.4f"
    return console_chart_queries(text) + table


def rule_queries() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def metric_names(queries: list[str]) -> set[str]:
    return {name for expr in queries for name in re.findall(r"streamfuse_\w+", expr)}
