"""``-p tests.support.repeat`` with ``REPEAT=N``: every collected test runs N times (ids end in
``-r0`` ... ``-rN-1``), to show that a test holds N runs in a row, e.g.::

    REPEAT=20 .venv/bin/python -m pytest -p tests.support.repeat -n 0 \\
        tests/integration/test_worker.py -k "always_raises or sigterm or two_workers"
"""

from __future__ import annotations

import os

import pytest


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    n = int(os.environ.get("REPEAT", "1"))
    if n > 1:
        metafunc.fixturenames.append("_repeat")
        metafunc.parametrize("_repeat", range(n), ids=lambda i: f"r{i}")


@pytest.fixture
def _repeat(request: pytest.FixtureRequest) -> int:
    return int(request.param)
