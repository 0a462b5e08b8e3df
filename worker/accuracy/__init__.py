"""Live accuracy: labels joined to published predictions, rolling scores, offline scoring.

:mod:`.labels` (the join and the rolling metrics), :mod:`.store` (rows kept by id as per-batch
arrays), :mod:`.window` (rolling windows updated and reverted a batch at a time), :mod:`.live`
(the worker's side: labels in, online strategies fed), :mod:`.challenger` (every strategy's
per-event outcome on the same labelled events), :mod:`.gates` (a rollout step's gates on paired
evidence), :mod:`.scoring` (held-out and replay score tables). No Kafka: label values arrive
as bytes. May import :mod:`worker.batch`, :mod:`worker.config`, :mod:`worker.metrics`.
"""

from __future__ import annotations

__all__: list[str] = []
