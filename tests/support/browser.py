"""Debian's Chromium, headless, for the tests: the DOM a page ends up with, and screenshots; and
readers of that DOM that say which charts drew no data.

Every run gets a fresh profile directory and the flags that keep Chromium off the network
except for the page asked for. ``--virtual-time-budget`` lets the page's scripts and fetches run
to completion (in virtual time) before the DOM is dumped.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The ``chromium`` binary; skips (a failure for tests marked ``browser``) when missing."""
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("Debian's chromium is not installed (dev/setup installs it as root)")
    return found


def _run(url: str, *args: str, budget_ms: int = 10_000) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        out = subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if out.returncode != 0:
        raise RuntimeError(f"chromium exited with {out.returncode}:\n{out.stderr[-2000:]}")
    return out


def dump_dom(url: str, budget_ms: int = 10_000) -> str:
    """The page's DOM after its scripts ran, serialised as HTML."""
    return _run(url, "--dump-dom", budget_ms=budget_ms).stdout


def screenshot(url: str, path: str, width: int = 1400, height: int = 1800) -> None:
    _run(url, f"--screenshot={path}", f"--window-size={width},{height}")


@dataclass
class Chart:
    title: str
    state: str = ""
    lines: list[int] = field(default_factory=list)  # points of each polyline drawn

    @property
    def drew_data(self) -> bool:
        return any(n >= 2 for n in self.lines)


class _Charts(HTMLParser):
    """Charts of a console page (``div.sf-chart``) or of a ``streamfuse report`` (``svg`` after
    an ``h2``), with the polylines each one holds."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[Chart] = []
        self.body: dict[str, str] = {}
        self._stack: list[tuple[str, Chart | None]] = []
        self._heading: list[str] | None = None
        self._last_heading = ""

    def _current(self) -> Chart | None:
        return next((c for _, c in reversed(self._stack) if c is not None), None)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        chart = None
        if tag == "body":
            self.body = a
        if tag == "div" and "sf-chart" in a.get("class", "").split():
            chart = Chart(a.get("data-title", ""), a.get("data-state", ""))
        elif tag == "svg" and self._current() is None:  # a report's chart
            chart = Chart(a.get("aria-label") or self._last_heading, "report")
        elif tag == "polyline" and (current := self._current()) is not None:
            current.lines.append(len(a.get("points", "").split()))
        elif tag == "h2":
            self._heading = []
        if chart is not None:
            self.charts.append(chart)
        if tag not in {"br", "meta", "link", "img", "input", "hr"}:
            self._stack.append((tag, chart))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._heading is not None:
            self._last_heading = "".join(self._heading).strip()
            self._heading = None
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading.append(data)


def charts(dom: str) -> tuple[list[Chart], dict[str, str]]:
    """The charts in ``dom`` and the ``<body>`` attributes."""
    parser = _Charts()
    parser.feed(dom)
    return parser.charts, parser.body


def empty_charts(dom: str) -> list[str]:
    """Titles of the charts in ``dom`` that drew no line of two points or more (a console
    chart must also say ``data-state="drawn"``); ``["no chart at all"]`` when there is none."""
    found, _ = charts(dom)
    if not found:
        return ["no chart at all"]
    return [
        f"{c.title} ({c.state or 'not drawn'}, lines of {c.lines} points)"
        for c in found
        if not c.drew_data or c.state not in {"drawn", "report"}
    ]
