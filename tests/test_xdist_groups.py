"""``dev/test`` relies on pytest-xdist keeping a group of tests on one process (``--dist
loadgroup``): the cluster, the fault lanes, the Schema Registry's tests and modules sharing a
module-scoped fixture (tests/conftest.py). pytest-xdist does it by renaming test ids, which some
pytest versions ignore (then every test runs wherever, silently). This runs a small suite with
groups added the way tests/conftest.py adds them, and checks each group ran on one process."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs a pytest-xdist suite in a child

SUITE = """
import pytest

@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    pass

@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""

CONFTEST = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if item.name.startswith("test_grouped"):
            item.add_marker(pytest.mark.xdist_group("one"))
"""


def test_a_group_runs_on_one_process(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    args = ["-n", "3", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider", "-o", "addopts="]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", *args, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    where: dict[str, set[str]] = defaultdict(set)
    for gw, test in re.findall(r"^\[(gw\d+)\] .*PASSED \S+::(test_\w+)", out.stdout, re.M):
        where[test].add(gw)
    assert len(re.findall(r"PASSED", out.stdout)) == 12, out.stdout
    assert len(where["test_grouped"]) == 1, f"the group ran on {sorted(where['test_grouped'])}"
