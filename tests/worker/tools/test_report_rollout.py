"""``streamfuse report``'s rollout chart: the rollout series read from a real exposition, the
share's steps, one line per decision, and no chart when no rollout ran."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from worker.metrics import Metrics
from worker.tools.report import ROLLOUT_TITLE, parse, write_report
from worker.tools.report_rollout import PANEL, SHARE_COLOR

SVG = "{http://www.w3.org/2000/svg}"


def _sample(t: float, share: float, scores: tuple[float, float], **counts: float) -> dict[str, Any]:
    decisions = {"advance": 0.0, "rollback": 0.0, "done": 0.0, **counts}
    return {
        "t": t, "rolling": {}, "latency_buckets": [], "drift": {}, "estimated": {},
        "rollout": {
            "share": share, "step": 0.0, "decisions": decisions,
            "scores": {"champion": scores[0], "candidate": scores[1]},
        },
    }  # fmt: skip


def test_scrape_reads_the_rollout_series_of_a_real_exposition(
    registry: CollectorRegistry,
) -> None:
    metrics = Metrics(registry)
    before = parse(generate_latest(registry).decode("utf-8"), t=1.0)["rollout"]
    assert before["share"] == 0.0 and before["step"] == -1.0
    assert before["decisions"] == {"advance": 0.0, "rollback": 0.0, "done": 0.0}
    assert all(math.isnan(v) for v in before["scores"].values())
    metrics.rollout_share.set(25)
    metrics.rollout_step.set(2)
    metrics.rollout_arm_score.labels("champion").set(0.41)
    metrics.rollout_arm_score.labels("candidate").set(0.96)
    metrics.rollout_decisions.labels("advance").inc(2)
    sample = parse(generate_latest(registry).decode("utf-8"), t=2.0)
    assert sample["t"] == 2.0
    assert sample["rollout"] == {
        "share": 25.0, "step": 2.0, "scores": {"champion": 0.41, "candidate": 0.96},
        "decisions": {"advance": 2.0, "rollback": 0.0, "done": 0.0},
    }  # fmt: skip


def test_the_rollout_chart_has_the_share_steps_and_a_line_per_decision(tmp_path: Path) -> None:
    nan = math.nan
    samples = [
        _sample(100.0, 0.0, (nan, nan)),
        _sample(101.0, 1.0, (nan, nan)),
        _sample(102.0, 1.0, (0.40, 0.95)),
        _sample(104.0, 5.0, (nan, nan), advance=1),  # a new step's evidence starts empty
        _sample(105.0, 5.0, (0.42, 0.97), advance=1),
        _sample(106.0, 50.0, (0.41, 0.96), advance=2),
        _sample(108.0, 100.0, (0.41, 0.96), advance=3),
        _sample(110.0, 0.0, (0.41, 0.96), advance=3, done=1),
    ]
    text = write_report(samples, tmp_path / "r.html", tmp_path / "svg").read_text()
    assert html.escape(ROLLOUT_TITLE) in text
    root = ElementTree.fromstring((tmp_path / "svg" / "rollout.svg").read_text())
    labels = [t.text for t in root.iter(SVG + "text")]
    markers = root.findall(SVG + "line")
    assert len(markers) == 4
    assert [x for x in labels if x and x.split()[0] in ("advance", "rollback", "done")] == [
        "advance (4 s)", "advance (6 s)", "advance (8 s)", "done (10 s)"
    ]  # fmt: skip
    share = next(p for p in root.iter(SVG + "polyline") if p.get("stroke") == SHARE_COLOR)
    ys = [float(point.split(",")[1]) for point in (share.get("points") or "").split()]
    seen = [round((min(ys) + PANEL - y) / PANEL * 100, 1) for y in ys]  # min(ys): 100%
    assert seen == [0, 0, 1, 1, 1, 1, 5, 5, 5, 5, 50, 50, 100, 100, 0]  # flat, then up
    scores = [p for p in root.iter(SVG + "polyline") if p.get("stroke") != SHARE_COLOR]
    assert len(scores) == 4  # each arm: before and after the step with no evidence yet
    assert "candidate's score (last 0.96)" in labels and "champion's score (last 0.41)" in labels


def test_a_rollback_is_marked_with_its_name(tmp_path: Path) -> None:
    samples = [_sample(0.0, 1.0, (0.9, 0.3)), _sample(1.0, 0.0, (0.9, 0.3), rollback=1)]
    write_report(samples, tmp_path / "r.html", tmp_path / "svg")
    svg = (tmp_path / "svg" / "rollout.svg").read_text()
    assert svg.count("<line") == 1 and ">rollback (1 s)</text>" in svg


@pytest.mark.parametrize(
    "samples",
    [
        [_sample(0.0, 0.0, (math.nan, math.nan)), _sample(1.0, 0.0, (math.nan, math.nan))],
        # decided before the sampling started: counted, but none during it
        [_sample(0.0, 0.0, (0.9, 0.3), rollback=1), _sample(1.0, 0.0, (0.9, 0.3), rollback=1)],
        [{"t": 0.0, "rolling": {}, "latency_buckets": []}],  # a sample saved before rollouts
    ],
    ids=["never", "before", "no-series"],
)
def test_no_rollout_chart_without_a_rollout(samples: list[dict[str, Any]], tmp_path: Path) -> None:
    text = write_report(samples, tmp_path / "r.html", tmp_path / "svg").read_text()
    assert html.escape(ROLLOUT_TITLE) not in text and "Rollout" not in text
    assert not (tmp_path / "svg" / "rollout.svg").exists()
