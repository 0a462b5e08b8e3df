"""Live accuracy in the worker: labels read from the labels topic, joined to published batches.

:class:`LiveAccuracy` hands each published batch's predictions and each read of label values
to the :class:`~worker.accuracy.labels.LabelJoiner` (which keeps the rolling metrics), and feeds
what was joined to the online strategies (``hedge``, ``select_best``) when
``labels.update_online`` is on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from worker.accuracy.labels import Joined, LabelJoiner
from worker.metrics import Metrics

__all__ = ["LiveAccuracy"]

log = logging.getLogger("streamfuse.worker")

MAX_LABELS_PER_POLL = 5000


class LiveAccuracy:
    def __init__(self, joiner: LabelJoiner, update_online: bool, metrics: Metrics) -> None:
        self.joiner = joiner
        self.update_online = update_online
        self.metrics = metrics
        self.on_joined: Callable[[Joined], None] | None = None  # champion/challenger evidence

    def add_batch(
        self,
        ids: list[Any],
        P: Any,
        available: Any,
        outputs: dict[str, Any],
        strategies: Sequence[Any],
    ) -> None:
        """A published batch's predictions (``P``: (n_models, n, n_outputs))."""
        if ids and P is not None:
            self.learn(self.joiner.add_predictions(ids, P, available, outputs), strategies)

    def add_labels(self, values: list[bytes | None], strategies: Sequence[Any]) -> None:
        if values:
            self.learn(self.joiner.add_labels(values), strategies)

    def learn(self, joined: Joined | None, strategies: Sequence[Any]) -> None:
        """Feed joined labels to the online strategies among ``strategies``."""
        if joined is not None and len(joined) and self.on_joined is not None:
            self.on_joined(joined)
        if joined is None or not len(joined) or not self.update_online:
            return
        for strategy in strategies:
            if not strategy.online:
                continue
            try:
                for P, y, available in joined.groups():
                    strategy.combiner.partial_fit(P, y, available=available)
            except Exception as exc:  # an online update must never stop the worker
                self.metrics.strategy_errors.labels(strategy.name).inc()
                log.warning("partial_fit of %s failed: %s", strategy.name, exc)
