"""Fixtures for the fault-injection suite (the trained store and topics come from
tests/conftest.py): a collector of the figures each test measured, printed at the end of the
run for docs/guarantees.md."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.faults.support import Figures

_FIGURES: list[Figures] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Callable[..., None]]:
    """``figures(events_sent=..., lost=...)`` records what a test measured, for the summary."""
    found: dict[str, Any] = {}
    yield found.update
    if found:
        line = Figures(request.node.name, found)
        _FIGURES.append(line)
        print(f"\n{line}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The broker-restart test runs last: it takes the shared broker down for ~10 s."""
    items.sort(key=lambda item: item.path.name == "test_broker_restart.py")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("streamfuse fault figures")
    for line in _FIGURES:
        terminalreporter.write_line(str(line))
