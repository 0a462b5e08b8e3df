"""``streamfuse report``: sample a worker's ``/metrics`` for a while, then write one HTML file
with hand-made inline SVG charts of the rolling scores per model and strategy, of the
end-to-end latency quantiles and, when the worker watches drift, of the features' drift and
of the active strategy's estimated accuracy beside its realised one (no plotting library,
nothing fetched when the file is opened).

A sample is plain data (``scrape`` returns one, so they can be saved as JSON lines)::

    {"t": epoch seconds,
     "rolling": {"model/rf/accuracy": 0.93, ...},
     "latency_buckets": [[upper bound, cumulative count], ..., [inf, n]],
     "drift": {"3/psi": 0.02, ...}, "estimated": {"strategy/soft_vote/accuracy": 0.95, ...},
     "weights": {"hedge/rf": 0.31, ...}, "active": "soft_vote",
     "rollout": {"share": 5.0, "step": 1, "scores": {"champion": 0.41, "candidate": 0.96},
                 "decisions": {"advance": 1.0, "rollback": 0.0, "done": 0.0}}}

Besides, a chart of each strategy's weights when they moved (``streamfuse_strategy_weight``) and,
when the active strategy changed (champion/challenger), the strategies' rolling accuracy with a
vertical line at each change (``promotion.svg``); when a rollout ran, its chart
(:mod:`.report_rollout`, ``rollout.svg``).
"""

from __future__ import annotations

import html
import math
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from worker.errors import StartupError

__all__ = ["charts", "collect", "parse", "quantile", "scrape", "write_report"]

LATENCY = "streamfuse_end_to_end_latency_seconds"
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
WIDTH, HEIGHT, PAD = 760, 260, 48
ROLLOUT = {
    "streamfuse_rollout_share": "share", "streamfuse_rollout_step": "step",
    "streamfuse_rollout_arm_score": "scores", "streamfuse_rollout_decisions_total": "decisions",
}  # fmt: skip


def scrape(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """One sample of the worker's metrics at ``url`` (``http://host:port/metrics``)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise StartupError(f"--url {url!r}: the metrics URL must be http:// or https://")
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (checked above)
        return parse(response.read().decode("utf-8"))


def parse(text: str, t: float | None = None) -> dict[str, Any]:
    """One sample of the metrics exposition ``text``, taken at ``t`` (default: now)."""
    sample: dict[str, Any] = {
        "t": time.time() if t is None else t, "rolling": {}, "latency_buckets": [], "drift": {},
        "estimated": {},
    }  # fmt: skip
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "streamfuse_rolling_metric":
                key = f"{s.labels['scope']}/{s.labels['name']}/{s.labels['metric']}"
                sample["rolling"][key] = s.value
            elif s.name == "streamfuse_estimated_metric":
                key = f"{s.labels['scope']}/{s.labels['name']}/{s.labels['metric']}"
                sample["estimated"][key] = s.value
            elif s.name == "streamfuse_feature_drift":
                sample["drift"][f"{s.labels['feature']}/{s.labels['statistic']}"] = s.value
            elif s.name == "streamfuse_active_strategy_info" and s.value == 1:
                sample["active"] = s.labels["strategy"]
            elif s.name == "streamfuse_strategy_weight":
                key = f"{s.labels['strategy']}/{s.labels['model']}"
                sample.setdefault("weights", {})[key] = s.value
            elif s.name == LATENCY + "_bucket":
                sample["latency_buckets"].append([float(s.labels["le"]), s.value])
            elif s.name in ROLLOUT:
                rollout = sample.setdefault("rollout", {"scores": {}, "decisions": {}})
                if s.name == "streamfuse_rollout_arm_score":
                    rollout["scores"][s.labels["arm"]] = s.value
                elif s.name == "streamfuse_rollout_decisions_total":
                    rollout["decisions"][s.labels["action"]] = s.value
                else:
                    rollout[ROLLOUT[s.name]] = s.value
    sample["latency_buckets"].sort()
    return sample


def collect(
    url: str, duration_s: float, interval_s: float = 2.0, stop: threading.Event | None = None
) -> list[dict[str, Any]]:
    """Scrape every ``interval_s`` for ``duration_s`` (or until ``stop`` is set)."""
    stop = stop or threading.Event()
    deadline = time.monotonic() + duration_s
    samples = [scrape(url)]
    while not stop.wait(max(0.0, min(interval_s, deadline - time.monotonic()))):
        samples.append(scrape(url))
        if time.monotonic() >= deadline:
            break
    return samples


def quantile(q: float, buckets: Sequence[Sequence[float]]) -> float:
    """``histogram_quantile`` of cumulative ``[[le, count], ...]`` (linear within a bucket)."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower  # as Prometheus: the highest finite bound
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = le, count
    return lower


def charts(samples: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(title, standalone SVG)`` for each chart of ``samples`` (oldest first)."""
    t0 = samples[0]["t"] if samples else 0.0
    rolling: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for key, value in s["rolling"].items():
            if math.isfinite(value):
                rolling.setdefault(key, []).append((s["t"] - t0, value))
    latency: dict[str, list[tuple[float, float]]] = {"p50": [], "p95": [], "p99": []}
    for prev, cur in pairwise(samples):  # per interval, not since start
        delta = _delta(prev["latency_buckets"], cur["latency_buckets"])
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            value = quantile(q, delta)
            if math.isfinite(value):
                latency[name].append((cur["t"] - t0, value * 1000))
    metrics = sorted({key.rsplit("/", 1)[1] for key in rolling})
    out = []
    for metric in metrics:
        title = f"Rolling {metric}"
        series = {k.rsplit("/", 1)[0]: v for k, v in rolling.items() if k.endswith("/" + metric)}
        out.append((title, _chart(title, series)))
    title = "End-to-end latency (ms, per scrape interval)"
    out.append((title, _chart(title, latency)))
    from worker.tools.report_rollout import rollout_charts  # it draws with this module's style

    return (
        out + _drift_charts(samples, t0) + _strategy_charts(samples, t0)
        + rollout_charts(samples, t0)
    )  # fmt: skip


DRIFT_TITLE = "Feature drift (PSI; the 5 features highest at the end)"
ESTIMATE_TITLE = "Estimated accuracy (no labels) and realised accuracy (labels), active strategy"


def _drift_charts(samples: list[dict[str, Any]], t0: float) -> list[tuple[str, str]]:
    """The drift charts, when the samples hold drift gauges."""
    if not any(s.get("drift") for s in samples):
        return []
    psi: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for key, value in s.get("drift", {}).items():
            feature, statistic = key.rsplit("/", 1)
            if statistic == "psi" and math.isfinite(value):
                psi.setdefault(f"feature {feature}", []).append((s["t"] - t0, value))
    top = sorted(psi, key=lambda k: psi[k][-1][1], reverse=True)[:5]
    active = next((s["active"] for s in reversed(samples) if s.get("active")), None)
    accuracy: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for label, values in (("estimated", s.get("estimated", {})), ("realised", s["rolling"])):
            value = values.get(f"strategy/{active}/accuracy", math.nan)
            if math.isfinite(value):
                accuracy.setdefault(f"{active} {label}", []).append((s["t"] - t0, value))
    return [
        (DRIFT_TITLE, _chart(DRIFT_TITLE, {k: psi[k] for k in top})),
        (ESTIMATE_TITLE, _chart(ESTIMATE_TITLE, accuracy)),
    ]


ROLLOUT_TITLE = "Rollout: the candidate's share of keys, both arms' scores; lines: decisions"
PROMOTION_TITLE = "Rolling accuracy of the strategies; vertical lines: the active one changes"


def _strategy_charts(samples: list[dict[str, Any]], t0: float) -> list[tuple[str, str]]:
    """The weights of every strategy whose weights moved, and the promotion moments."""
    weights: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for s in samples:
        for key, value in s.get("weights", {}).items():
            strategy, model = key.split("/", 1)
            weights.setdefault(strategy, {}).setdefault(model, []).append((s["t"] - t0, value))
    out = []
    for strategy, series in sorted(weights.items()):
        values = [v for pts in series.values() for _, v in pts]
        if max(values) - min(values) > 1e-9 and any(
            max(v for _, v in pts) - min(v for _, v in pts) > 1e-9 for pts in series.values()
        ):
            title = f"Weights of {strategy}"
            out.append((title, _chart(title, series)))
    changes = [
        (cur["t"] - t0, cur["active"])
        for prev, cur in pairwise(samples)
        if cur.get("active") and prev.get("active") and cur["active"] != prev["active"]
    ]
    if changes:
        accuracy: dict[str, list[tuple[float, float]]] = {}
        for s in samples:
            for key, value in s["rolling"].items():
                scope, name, metric = key.split("/")
                if scope == "strategy" and metric == "accuracy" and math.isfinite(value):
                    accuracy.setdefault(name, []).append((s["t"] - t0, value))
        values = [v for pts in accuracy.values() for _, v in pts] or [0.0, 1.0]
        for t, name in changes:
            accuracy[f"now active: {name} (at {t:.0f} s)"] = [(t, min(values)), (t, max(values))]
        out.append((PROMOTION_TITLE, _chart(PROMOTION_TITLE, accuracy)))
    return out


def write_report(
    samples: list[dict[str, Any]], path: str | Path, svg_dir: str | Path | None = None
) -> Path:
    """Write the HTML report of ``samples`` (oldest first) to ``path``; returns the path.

    With ``svg_dir``, each chart is also written there as a standalone SVG file
    (``rolling-accuracy.svg``, ..., ``latency.svg``, ``feature-drift.svg``,
    ``estimated-accuracy.svg``, ``promotion.svg``, ``rollout.svg``), for a README or a wiki.
    """
    path = Path(path)
    t0 = samples[0]["t"] if samples else 0.0
    drawn = charts(samples)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)) if samples else "-"
    path.write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>streamfuse report</title>"
        "<style>body{font-family:sans-serif;margin:24px}svg{display:block;margin:12px 0}"
        "</style></head><body>\n"
        f"<h1>streamfuse report</h1><p>{len(samples)} samples from {html.escape(when)}</p>\n"
        + "\n".join(f"<h2>{html.escape(t)}</h2>{svg}" for t, svg in drawn)
        + "\n</body></html>\n",
        encoding="utf-8",
    )
    if svg_dir is not None:
        folder = Path(svg_dir)
        folder.mkdir(parents=True, exist_ok=True)
        names = {
            DRIFT_TITLE: "feature-drift", ESTIMATE_TITLE: "estimated-accuracy",
            ROLLOUT_TITLE: "rollout",
        }  # fmt: skip
        for title, svg in drawn:
            name = "latency" if title.startswith("End-to-end") else title.lower().replace(" ", "-")
            name = "promotion" if title == PROMOTION_TITLE else names.get(title, name)
            (folder / f"{name}.svg").write_text(svg, encoding="utf-8")
    return path


def _delta(prev: list[list[float]], cur: list[list[float]]) -> list[list[float]]:
    before = {le: count for le, count in prev}
    return [[le, count - before.get(le, 0.0)] for le, count in cur]


def _chart(title: str, series: dict[str, list[tuple[float, float]]]) -> str:
    points = [p for pts in series.values() for p in pts]
    if not points:
        return (
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='40'>"
            f"<text x='{PAD}' y='24' font-size='13'>{html.escape(title)}: no data</text></svg>"
        )
    x_max = max(x for x, _ in points) or 1.0
    y_min, y_max = min(y for _, y in points), max(y for _, y in points)
    if y_max - y_min < 1e-12:
        y_min, y_max = y_min - 0.5, y_max + 0.5

    def xy(x: float, y: float) -> str:
        px = PAD + x / x_max * (WIDTH - 2 * PAD)
        py = HEIGHT - PAD - (y - y_min) / (y_max - y_min) * (HEIGHT - 2 * PAD)
        return f"{px:.1f},{py:.1f}"

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}'"
        f" height='{HEIGHT + 20 * len(series)}' role='img' aria-label='{html.escape(title)}'"
        " style='background:#fff'>",
        f"<text x='{WIDTH // 2}' y='{PAD - 8}' font-size='13' text-anchor='middle'>"
        f"{html.escape(title)}</text>",
        f"<rect x='{PAD}' y='{PAD}' width='{WIDTH - 2 * PAD}' height='{HEIGHT - 2 * PAD}'"
        " fill='none' stroke='#ccc'/>",
        f"<text x='4' y='{PAD + 4}' font-size='11'>{y_max:.4g}</text>",
        f"<text x='4' y='{HEIGHT - PAD}' font-size='11'>{y_min:.4g}</text>",
        f"<text x='{WIDTH - PAD}' y='{HEIGHT - PAD + 16}' font-size='11' text-anchor='end'>"
        f"{x_max:.0f} s</text>",
    ]
    for i, (name, pts) in enumerate(sorted(series.items())):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(xy(x, y) for x, y in pts)
        parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='2' points='{coords}'/>")
        parts.append(
            f"<text x='{PAD}' y='{HEIGHT + 14 * i}' font-size='12' fill='{color}'>"
            f"{html.escape(name)} (last {pts[-1][1]:.4g})</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
