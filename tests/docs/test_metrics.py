"""``docs/metrics.md`` lists every series the worker registers, with its type and labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from worker.metrics import (
    DEAD_LETTER_STAGES,
    MODEL_ERROR_KINDS,
    RELOAD_OUTCOMES,
    BatchHistogram,
    Metrics,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(streamfuse_\w+)` \| (\w+) \|([^|]*)\| (.*) \|\s*$")


def registered() -> dict[str, tuple[str, tuple[str, ...]]]:
    """``exported name -> (type, label names)`` of every metric on a fresh registry."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    labels: dict[str, tuple[str, ...]] = {}
    for m in vars(metrics).values():
        if isinstance(m, MetricWrapperBase):  # prometheus_client keeps no public label names
            labels[m._name] = tuple(m._labelnames)
        elif isinstance(m, BatchHistogram):
            labels[m.name] = ()
    found = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert family.name in labels, f"{family.name} is registered outside Metrics' attributes"
        found[name] = (family.type, labels[family.name])
    return found


def documented(page: str) -> dict[str, tuple[str, tuple[str, ...], str]]:
    rows = {}
    for line in page.splitlines():
        match = ROW.match(line)
        if match:
            name, kind, labels, meaning = match.groups()
            rows[name] = (kind, tuple(re.findall(r"`(\w+)`", labels)), meaning.strip())
    return rows


def row(name: str, kind: str, labels: tuple[str, ...]) -> str:
    return f"| `{name}` | {kind} | {', '.join(f'`{x}`' for x in labels)} | <meaning> |"


def test_every_registered_series_is_documented_and_every_documented_one_exists() -> None:
    real = registered()
    page = documented(PAGE.read_text(encoding="utf-8"))
    problems = [
        f"{name} is not in docs/metrics.md: add the row {row(name, *real[name])}"
        for name in real
        if name not in page
    ]
    problems += [
        f"{name} is in docs/metrics.md but the worker registers no such series"
        for name in page
        if name not in real
    ]
    for name in real.keys() & page.keys():
        kind, labels, meaning = page[name]
        if (kind, labels) != real[name]:
            problems.append(
                f"{name}: the page says {kind} {labels}, worker/metrics.py {real[name]}"
            )
        if not meaning:
            problems.append(f"{name} has no meaning in docs/metrics.md")
    assert not problems, "\n".join(problems)


def test_registered_finds_the_kinds_and_labels() -> None:
    real = registered()
    assert real["streamfuse_events_dead_lettered_total"] == ("counter", ("stage",))
    assert real["streamfuse_end_to_end_latency_seconds"] == ("histogram", ())
    assert real["streamfuse_rolling_metric"] == ("gauge", ("scope", "name", "metric"))
    assert len(real) >= 30


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("streamfuse_events_dead_lettered_total", DEAD_LETTER_STAGES),
        ("streamfuse_model_errors_total", MODEL_ERROR_KINDS),
        ("streamfuse_model_reloads_total", RELOAD_OUTCOMES),
    ],
)
def test_known_label_values_are_listed(name: str, values: tuple[str, ...]) -> None:
    meaning = documented(PAGE.read_text(encoding="utf-8"))[name][2]
    missing = [v for v in values if f"`{v}`" not in meaning]
    assert not missing, f"docs/metrics.md: the row of {name} does not name {missing}"
