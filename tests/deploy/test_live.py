"""Watch it work: a fresh worker on the real broker, Debian's Prometheus scraping it with the
repo's rules and consoles, a short stream with its labels, and headless Chromium opening the
console dashboard and the ``streamfuse report`` page.

One worker, broker topics, Prometheus and stream for the whole module (about 40 s). Set
``STREAMFUSE_TEST_SCREENSHOT=docs/console-dashboard.png`` to keep the console's screenshot.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import browser
from tests.support.dashboards import (
    CONSOLE,
    console_queries,
    grafana_queries,
    metric_names,
    rule_queries,
)
from tests.support.kafka import Broker, unique, wait_for
from tests.support.prometheus import CONSOLES, Prometheus, get, start_prometheus
from tests.support.worker import Topics, WorkerProcess, write_config
from worker.config import Settings, load_settings
from worker.metrics import DEAD_LETTER_STAGES, MODEL_ERROR_KINDS, RELOAD_OUTCOMES
from worker.tools.produce import produce
from worker.tools.report import collect, write_report

pytestmark = pytest.mark.kafka

N_EVENTS, RATE = 600, 50.0  # 12 s of stream
MODELS = ["rf", "hgb", "linear", "mlp"]
STRATEGIES = ["soft_vote", "hard_vote", "hedge"]


@dataclass
class Live:
    folder: Path
    settings: Settings
    metrics_url: str
    fresh: str  # /metrics of the worker before its first event
    prometheus: Prometheus
    consoles: Path  # the folder Prometheus serves /consoles/ from (a copy of the repo's)
    samples: list[dict[str, Any]]  # what `streamfuse report` sampled during the stream
    report: Path

    def console_url(self, page: str = "streamfuse.html") -> str:
        return f"{self.prometheus.url}/consoles/{page}?range=2m&window=10s&refresh=0"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(text: str, name: str, /, **labels: str) -> float | None:
    return _samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture(scope="module")
def live(
    kafka: Broker, trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("live")
    topics = Topics(*(kafka.create_topic(unique(p)) for p in ("features", "out", "labels", "dlq")))
    config = write_config(
        folder / "streamfuse.yaml",
        store=trained_store,
        bootstrap=kafka.bootstrap,
        topics=topics,
        group=unique("live"),
        shadows=STRATEGIES[1:],
        labels={"window": 50},
        metrics={"lag_interval_s": 0.5},
    )
    settings = load_settings(config)
    metrics_url = f"http://127.0.0.1:{settings.metrics.port}/metrics"
    consoles = folder / "consoles"
    shutil.copytree(CONSOLES, consoles)
    worker = WorkerProcess(config, folder / "worker.log").start()
    prometheus: Prometheus | None = None
    try:
        worker.wait_assigned()
        prometheus = start_prometheus(folder, settings.metrics.port, consoles=consoles)

        def lag_exported() -> str | None:
            text = get(metrics_url)
            return text if "streamfuse_consumer_lag{" in text else None

        fresh = wait_for(lag_exported, timeout=30, what="the first consumer lag refresh")
        stop = threading.Event()
        samples: list[dict[str, Any]] = []
        sampler = threading.Thread(
            target=lambda: samples.extend(collect(metrics_url, 120, interval_s=1.0, stop=stop))
        )
        sampler.start()
        try:
            produce(settings, N_EVENTS, RATE, labels_delay=1.0, prefix="live", progress=False)
            wait_for(
                lambda: _value(get(metrics_url), "streamfuse_labels_joined_total") == N_EVENTS,
                timeout=60,
                what="every label to be joined",
            )
            prom = prometheus
            wait_for(
                lambda: prom.value("streamfuse_labels_joined_total") == N_EVENTS,
                timeout=30,
                what="Prometheus to scrape the last label",
            )
        finally:
            stop.set()
            sampler.join(30)
        report = write_report(samples, folder / "report.html")
        yield Live(folder, settings, metrics_url, fresh, prometheus, consoles, samples, report)
    finally:
        worker.stop()
        if prometheus is not None:
            prometheus.stop()


def test_a_fresh_worker_exports_every_series_the_dashboards_and_rules_use(live: Live) -> None:
    fresh = _samples(live.fresh)
    names = {name for name, _ in fresh}
    used = metric_names(console_queries() + grafana_queries() + rule_queries())
    assert used - names == set(), "used by a dashboard or rule but not exported before any event"
    assert _value(live.fresh, "streamfuse_events_published_total") == 0  # before any event
    topic = live.settings.topics.input
    assert _value(live.fresh, "streamfuse_events_consumed_total", topic=topic) == 0
    for stage in DEAD_LETTER_STAGES:
        assert _value(live.fresh, "streamfuse_events_dead_lettered_total", stage=stage) == 0
    for model in MODELS:
        for kind in MODEL_ERROR_KINDS:
            assert _value(live.fresh, "streamfuse_model_errors_total", model=model, kind=kind) == 0
        for outcome in RELOAD_OUTCOMES:
            value = _value(
                live.fresh, "streamfuse_model_reloads_total", model=model, outcome=outcome
            )
            assert value == 0
    for strategy in STRATEGIES:
        assert _value(live.fresh, "streamfuse_strategy_errors_total", strategy=strategy) == 0
    assert _value(live.fresh, "streamfuse_active_strategy_info", strategy="soft_vote") == 1
    heldout = _value(
        live.fresh,
        "streamfuse_heldout_metric",
        scope="strategy",
        name="soft_vote",
        metric="accuracy",
    )
    assert heldout is not None and 0.9 < heldout <= 1.0
    print(f"fresh /metrics: {len(live.fresh)} bytes, {len(fresh)} samples, {len(used)} names used")


def test_prometheus_serves_the_console_and_the_rules(live: Live) -> None:
    page = get(live.prometheus.url + "/consoles/streamfuse.html")
    assert "<h1>streamfuse</h1>" in page and "sf-chart" in page
    assert live.prometheus.value("sum(streamfuse_events_published_total)") == N_EVENTS
    rules = json.loads(get(live.prometheus.url + "/api/v1/rules"))["data"]["groups"]
    loaded = [r for g in rules for r in g["rules"]]
    expected = yaml.safe_load(Path(rules[0]["file"]).read_text())["groups"][0]["rules"]
    assert len(loaded) == len(expected) and all(r["health"] == "ok" for r in loaded)
    firing = live.prometheus.query('ALERTS{alertstate="firing"}')
    assert firing == [], firing


@pytest.mark.browser
def test_the_console_draws_every_chart(live: Live) -> None:
    dom = browser.dump_dom(live.console_url())
    charts, body = browser.charts(dom)
    assert body.get("data-charts") == "done", "the page's script did not finish"
    assert len(charts) == CONSOLE.read_text().count('class="sf-chart"') >= 11
    assert browser.empty_charts(dom) == []
    for model in MODELS:  # the side table, drawn by Prometheus from streamfuse_model_info
        assert f"<td>{model}</td><td>v1</td>" in dom
    shot = live.folder / "console.png"
    browser.screenshot(live.console_url(), str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if target := os.environ.get("STREAMFUSE_TEST_SCREENSHOT"):
        shutil.copy(shot, target)


@pytest.mark.browser
def test_the_console_check_fails_on_an_empty_chart(live: Live) -> None:
    page = (live.consoles / "streamfuse.html").read_text()
    broken = page.replace(
        "sum(rate(streamfuse_events_published_total[1m]))</code>", "streamfuse_nothing</code>", 1
    ).replace(
        "sum by (topic) (rate(streamfuse_events_consumed_total[1m]))", "streamfuse_nothing", 1
    )
    assert broken.count("streamfuse_nothing") == 2
    (live.consoles / "broken.html").write_text(broken)
    empty = browser.empty_charts(browser.dump_dom(live.console_url("broken.html")))
    assert len(empty) == 1 and empty[0].startswith("Throughput (events/s) (empty"), empty


@pytest.mark.browser
def test_the_report_draws_every_chart(live: Live) -> None:
    dom = browser.dump_dom(live.report.as_uri(), budget_ms=1000)
    charts, _ = browser.charts(dom)
    titles = [c.title for c in charts]
    assert titles == [
        "Rolling accuracy",
        "Rolling brier",
        "Rolling log_loss",
        "End-to-end latency (ms, per scrape interval)",
        "Feature drift (PSI; the 5 features highest at the end)",
        "Estimated accuracy (no labels) and realised accuracy (labels), active strategy",
        "Weights of hedge",  # the shadow hedge learns from the labels: its weights move
    ]
    assert browser.empty_charts(dom) == []


@pytest.mark.browser
def test_the_report_check_fails_on_an_empty_chart(live: Live) -> None:
    samples = [{**s, "latency_buckets": []} for s in live.samples]
    path = write_report(samples, live.folder / "report-no-latency.html")
    empty = browser.empty_charts(browser.dump_dom(path.as_uri(), budget_ms=1000))
    assert len(empty) == 1 and empty[0].startswith("End-to-end latency"), empty
