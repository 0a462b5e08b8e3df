"""What is served and how a batch is predicted: models, strategies, the pipeline, hot reload.

:mod:`.store` (opening the configured store), :mod:`.models` (the model set loaded from the
store), :mod:`.strategies` (fitted combiners), :mod:`.serving` (one immutable snapshot of both,
built in one place), :mod:`.fanout` (models in parallel threads), :mod:`.pipeline` (decode →
predict → combine → encode for one batch), :mod:`.reload` (new snapshots from promotions),
:mod:`.warm` (a new version warmed and checked against what it answered at publish),
:mod:`.arms` and :mod:`.candidate` (a rollout's key-sticky arms and its candidate predicted
beside the champion). No Kafka. May import :mod:`worker.batch`, :mod:`worker.config`,
:mod:`worker.errors`, :mod:`worker.metrics`, ``combiners`` and ``model_store``.
"""

from __future__ import annotations

__all__: list[str] = []
