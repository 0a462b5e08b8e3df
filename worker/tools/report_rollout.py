"""The rollout chart of ``streamfuse report`` (``rollout.svg``), drawn when a rollout ran while
the worker was sampled: its share was above 0 or it counted a decision.

One clock, two panels: above, the candidate's published share of keys
(``streamfuse_rollout_share``, percent) as a step line; below, both arms' scores at the step
in force (``streamfuse_rollout_arm_score{arm}``: accuracy with ``mcnemar``, mean loss with
``paired_loss``) on their own scale, with a gap where an arm has no score (a step's evidence
starts empty). A vertical line crosses both at each decision the worker counted
(``streamfuse_rollout_decisions_total{action}``), labelled with its action and time.
"""

from __future__ import annotations

import html
import math
from itertools import pairwise
from typing import Any

from worker.tools.report import COLORS, PAD, ROLLOUT_TITLE, WIDTH

__all__ = ["decisions", "rollout_charts"]

PANEL, GAP = 110, 36  # each panel's height; the gap between them holds the decisions' names
ARMS = {"champion": COLORS[0], "candidate": COLORS[1]}
SHARE_COLOR = COLORS[2]
ACTION_COLORS = {"advance": "#555", "rollback": COLORS[3], "done": COLORS[4]}


def decisions(samples: list[dict[str, Any]], t0: float) -> list[tuple[float, str, int]]:
    """``(seconds since t0, action, how many)`` for each action whose decisions counter grew
    between two samples, at the later one (as the promotion chart's changes)."""
    rolled = [s for s in samples if "rollout" in s]
    out = []
    for prev, cur in pairwise(rolled):
        before, after = prev["rollout"]["decisions"], cur["rollout"]["decisions"]
        for action in sorted(after, key=lambda a: (a not in ACTION_COLORS, a)):
            n = round(after[action] - before.get(action, 0.0))
            if n > 0:
                out.append((cur["t"] - t0, action, n))
    return out


def rollout_charts(samples: list[dict[str, Any]], t0: float) -> list[tuple[str, str]]:
    """The rollout chart of ``samples``, or none when no rollout ran while they were taken."""
    rolled = [s for s in samples if "rollout" in s]
    moves = decisions(samples, t0)
    shares = [(s["t"] - t0, s["rollout"].get("share", 0.0)) for s in rolled]
    if not moves and not any(v > 0 for _, v in shares):
        return []
    scores: dict[str, list[tuple[float, float]]] = {}
    for s in rolled:
        for arm, value in s["rollout"]["scores"].items():
            scores.setdefault(arm, []).append((s["t"] - t0, value))
    x_max = max((s["t"] - t0 for s in samples), default=0.0) or 1.0
    return [(ROLLOUT_TITLE, _svg(shares, scores, moves, x_max))]


def _svg(
    shares: list[tuple[float, float]],
    scores: dict[str, list[tuple[float, float]]],
    moves: list[tuple[float, str, int]],
    x_max: float,
) -> str:
    top, low = PAD, PAD + PANEL + GAP  # the share panel's top, the scores panel's top
    bottom = low + PANEL
    finite = [v for pts in scores.values() for _, v in pts if math.isfinite(v)]
    y_min, y_max = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if y_max - y_min < 1e-12:
        y_min, y_max = y_min - 0.05, y_max + 0.05

    def px(x: float) -> float:
        return PAD + x / x_max * (WIDTH - 2 * PAD)

    def share_xy(x: float, share: float) -> str:
        return f"{px(x):.1f},{top + PANEL - share / 100 * PANEL:.1f}"

    def score_xy(x: float, y: float) -> str:
        return f"{px(x):.1f},{bottom - (y - y_min) / (y_max - y_min) * PANEL:.1f}"

    legend = 1 + len(scores)
    height = bottom + 28 + 14 * legend
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' role='img'"
        f" aria-label='{html.escape(ROLLOUT_TITLE)}' style='background:#fff'>",
        f"<text x='{WIDTH // 2}' y='{PAD - 8}' font-size='13' text-anchor='middle'>"
        f"{html.escape(ROLLOUT_TITLE)}</text>",
    ]
    for y in (top, low):
        parts.append(
            f"<rect x='{PAD}' y='{y}' width='{WIDTH - 2 * PAD}' height='{PANEL}' fill='none'"
            " stroke='#ccc'/>"
        )
    parts += [
        f"<text x='4' y='{top + 4}' font-size='11'>100%</text>",
        f"<text x='4' y='{top + PANEL}' font-size='11'>0%</text>",
        f"<text x='4' y='{low + 4}' font-size='11'>{y_max:.4g}</text>",
        f"<text x='4' y='{bottom}' font-size='11'>{y_min:.4g}</text>",
        f"<text x='{WIDTH - PAD}' y='{bottom + 16}' font-size='11' text-anchor='end'>"
        f"{x_max:.0f} s</text>",
    ]
    steps = [share_xy(x, v) for (x, v) in shares[:1]]
    for (_, before), (x, v) in pairwise(shares):  # flat until the sample that saw the move
        steps += [share_xy(x, before), share_xy(x, v)]
    parts.append(
        f"<polyline fill='none' stroke='{SHARE_COLOR}' stroke-width='2'"
        f" points='{' '.join(steps)}'/>"
    )
    for arm, pts in sorted(scores.items()):
        color = ARMS.get(arm, COLORS[5])
        for run in _finite_runs(pts):
            coords = " ".join(score_xy(x, y) for x, y in run)
            parts.append(
                f"<polyline fill='none' stroke='{color}' stroke-width='2'"
                f" stroke-linecap='round' points='{coords}'/>"
            )
    for i, (x, action, n) in enumerate(moves):
        color = ACTION_COLORS.get(action, "#555")
        name = action if n == 1 else f"{action} x{n}"
        parts += [
            f"<line x1='{px(x):.1f}' y1='{top}' x2='{px(x):.1f}' y2='{bottom}' stroke='{color}'"
            " stroke-width='1.5' stroke-dasharray='4 3'/>",
            f"<text x='{px(x) + 3:.1f}' y='{top + PANEL + 14 + 14 * (i % 2)}' font-size='11'"
            f" fill='{color}'>{html.escape(name)} ({x:.0f} s)</text>",
        ]
    last_share = shares[-1][1] if shares else 0.0
    lines = [(SHARE_COLOR, f"candidate's share of keys, % (last {last_share:.4g})")]
    for arm, pts in sorted(scores.items()):
        last = next((f"{y:.4g}" for _, y in reversed(pts) if math.isfinite(y)), "none")
        lines.append((ARMS.get(arm, COLORS[5]), f"{arm}'s score (last {last})"))
    for i, (color, text) in enumerate(lines):
        parts.append(
            f"<text x='{PAD}' y='{bottom + 34 + 14 * i}' font-size='12' fill='{color}'>"
            f"{html.escape(text)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _finite_runs(pts: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
    """The runs of finite points (a single point is drawn as a short run of itself)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in pts:
        if math.isfinite(y):
            runs[-1].append((x, y))
        elif runs[-1]:
            runs.append([])
    return [run if len(run) > 1 else run * 2 for run in runs if run]
