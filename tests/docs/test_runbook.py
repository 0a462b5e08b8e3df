"""``docs/operations.md``'s runbook has one row for every rule of ``deploy/prometheus/alerts.yml``,
and no row for a rule that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
PAGE = ROOT / "docs" / "operations.md"
ROW = re.compile(r"^\| `(Streamfuse\w+)`", re.M)


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def runbook_problems(page: str, alerts: set[str]) -> list[str]:
    rows = ROW.findall(page.split("## Runbook", 1)[-1])
    problems = [f"{name} has no runbook row" for name in sorted(alerts - set(rows))]
    problems += [
        f"the runbook names {name}, which alerts.yml has not" for name in rows if name not in alerts
    ]
    problems += [
        f"{name} has two runbook rows" for name in sorted(set(rows)) if rows.count(name) > 1
    ]
    return problems


def test_every_alert_has_a_runbook_row() -> None:
    alerts = alert_names()
    assert len(alerts) > 10  # the rules were read at all
    assert runbook_problems(PAGE.read_text(encoding="utf-8"), alerts) == []


def test_a_missing_or_stray_row_is_caught() -> None:
    page = PAGE.read_text(encoding="utf-8")
    alerts = alert_names()
    without = re.sub(r"^\| `StreamfuseNoEvents`.*\n", "", page, flags=re.M)
    assert runbook_problems(without, alerts) == ["StreamfuseNoEvents has no runbook row"]
    assert runbook_problems(page, alerts - {"StreamfuseNoEvents"}) == [
        "the runbook names StreamfuseNoEvents, which alerts.yml has not"
    ]
