"""Fixtures for the fault-injection suite (the trained store and topics come from
tests/conftest.py): a collector of the figures each test measured, printed at the end of the
run for docs/guarantees.md. The figures travel in each test's report (``user_properties``), so
tests/conftest.py prints them in the controlling process, whichever xdist worker ran the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.faults.support import Figures


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """``figures(events_sent=..., lost=...)`` records what a test measured, for the summary."""
    found: dict[str, Any] = {}
    yield found.update
    if found:
        line = Figures(request.node.name, found)
        request.node.user_properties.append(("streamfuse-figures", str(line)))
        print(f"\n{line}")
