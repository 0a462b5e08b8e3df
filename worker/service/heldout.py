"""The score of what is served on data it never trained on, for the accuracy alert's baseline.

``streamfuse train`` keeps the test split in the store (``test``); ``streamfuse fit`` keeps
only the held-out set the strategies were fitted on (``heldout``), which flatters learned
strategies but is the best there is then. Each served model and strategy is scored on it with
the served versions, once at start-up and after every hot reload, and exported as
``streamfuse_heldout_metric{scope, name, metric}`` (names as in ``streamfuse_rolling_metric``).
"""

from __future__ import annotations

import logging

import numpy as np

from model_store import ModelStore, ModelStoreError
from worker.accuracy.scoring import score
from worker.inference.serving import Serving
from worker.inference.strategies import heldout_name

__all__ = ["heldout_scores"]

log = logging.getLogger("streamfuse.worker")

TEST_DATASET = "test"


def heldout_scores(store: ModelStore, serving: Serving) -> list[tuple[str, str, str, float]]:
    """``(scope, name, metric, value)`` for every served model and strategy; empty (with a
    warning) when the store has no data to score on or scoring fails."""
    try:
        X, y = _data(store, serving)
        P = np.stack([fn(X) for fn in serving.predict_fns])  # (n_models, n, n_outputs)
        outputs = [("model", n, P[m]) for m, n in enumerate(serving.names)]
        for strategy in serving.strategies:
            outputs.append(("strategy", strategy.name, strategy.combiner.combine(P)))
    except Exception as exc:  # a baseline must never stop the worker
        log.warning("no held-out scores to export: %s", exc)
        return []
    layout = serving.layout
    y = y.reshape(len(y), -1)
    rows: list[tuple[str, str, str, float]] = []
    for scope, name, out in outputs:
        for j, block in enumerate(layout.blocks):
            label = f"{name}[{block.name}]" if layout.is_multitask else name
            scores = score(block.kind, out[:, block.start : block.stop], y[:, j])
            rows.extend((scope, label, metric, value) for metric, value in scores.items())
    return rows


def _data(store: ModelStore, serving: Serving) -> tuple[np.ndarray, np.ndarray]:
    multitask = serving.layout.is_multitask
    try:
        data = store.load_dataset(TEST_DATASET)
        key = "targets" if multitask else "y"
        if key in data.arrays:
            return np.asarray(data.arrays["X"], dtype=np.float64), np.asarray(data.arrays[key])
    except ModelStoreError:
        pass
    data = store.load_dataset(heldout_name(serving.model_set))
    return np.asarray(data.arrays["X"], dtype=np.float64), np.asarray(data.arrays["y"])
