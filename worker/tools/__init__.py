"""Tooling beside the service: train, produce, replay, report, bench (and their data sets).

Imported lazily by the CLI, one command at a time. Tools may import anything in ``worker`` and
a Kafka client (``produce`` and the bench fill topics with kafka-python directly); nothing
outside :mod:`worker.tools` and :mod:`worker.cli` imports them. The comparative benchmarks are
not here: they live in the repository's ``benchmarks/``, outside the package.
"""

from __future__ import annotations

__all__: list[str] = []
