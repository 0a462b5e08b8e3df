"""The alert rules: valid, unit-tested with ``promtool test rules``, and those tests able to fail.

Each rule is broken twice in a copy of ``alerts.yml``, once so that it never fires and once so
that it always fires; ``alerts_test.yml`` must catch both, which shows every rule has a case
where it should fire and one where it should stay quiet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dashboards import exported_names

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "deploy" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
ALERTS_TEST = RULES_DIR / "alerts_test.yml"
BREAKS = {"never fires": "vector(1) < 0", "always fires": "vector(1)"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed (dev/setup installs Debian's prometheus as root)")
    return found


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def run_rule_tests(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_rules_are_valid() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_the_rule_tests_pass() -> None:
    out = run_rule_tests(RULES_DIR)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_rule_is_tested_firing_and_quiet() -> None:
    firing, quiet = set(), set()
    for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in rules()}
    assert firing == names and quiet == names


def test_every_metric_of_the_rules_is_exported() -> None:
    used = {name for rule in rules() for name in re.findall(r"streamfuse_\w+", rule["expr"])}
    assert used and used <= exported_names(), sorted(used - exported_names())


@pytest.mark.parametrize("how", sorted(BREAKS))
@pytest.mark.parametrize("alert", [rule["alert"] for rule in rules()])
def test_a_broken_rule_fails_the_rule_tests(alert: str, how: str, tmp_path: Path) -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == alert:
                rule["expr"] = BREAKS[how]
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(doc))
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    out = run_rule_tests(tmp_path)
    assert out.returncode != 0, f"{alert} {how} and the rule tests still pass"
    assert f"alertname: {alert}" in out.stdout + out.stderr
