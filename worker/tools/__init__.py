"""Tooling beside the service: train, produce, replay, report, bench (and their data sets).

Imported lazily by the CLI, one command at a time. Tools may import anything in ``worker`` and
a Kafka client (the bench's reference loops and fills use kafka-python directly); nothing
outside :mod:`worker.tools` and :mod:`worker.cli` imports them.
"""

from __future__ import annotations

__all__: list[str] = []
