"""Live accuracy: labels joined to published predictions, rolling scores, offline scoring.

:mod:`.labels` (the join and the rolling windows), :mod:`.live` (the worker's side: labels in,
online strategies fed), :mod:`.scoring` (held-out and replay score tables). No Kafka: label
values arrive as bytes. May import :mod:`worker.batch`, :mod:`worker.config`,
:mod:`worker.metrics`.
"""

from __future__ import annotations

__all__: list[str] = []
