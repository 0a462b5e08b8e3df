"""On a drifting stream Hedge's weight gauge moves away from the model the drift hurt most: the
stream runs through the worker's pipeline and label join (no broker) in batches, each batch's
labels joined after it, and the gauge read after each as the worker exports it.

The stream is built here (``train --dataset synthetic --drift`` trains on rows from both sides
of its drift, so there no model is hurt much): ``y = x0 + x1 > 0`` until halfway, then
``y = x1 - x0 > 0``. Three logistic regressions learnt the past from ``x0`` alone, ``x1``
alone and both; the drift takes about half of the first's and the third's accuracy (75% to
25%, about 100% to 50%) and leaves the second's (75%).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from sklearn.linear_model import LogisticRegression

from model_store import ModelStore
from worker.accuracy.labels import LabelJoiner
from worker.accuracy.live import LiveAccuracy
from worker.config import LabelsSettings, ModelErrorPolicy, ModelRef, StrategyRef
from worker.inference.models import ModelSet
from worker.inference.pipeline import Pipeline
from worker.inference.serving import Serving
from worker.inference.strategies import build_strategies
from worker.metrics import Metrics

pytestmark = pytest.mark.slow  # trains models and streams drifted batches

MODELS = ("x0", "x1", "both")
COLUMNS = {"x0": [0], "x1": [1], "both": [0, 1]}
BATCH = 50
N_STREAM = 1000


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = "f", 0, offset, None, value


def past_model(gen: np.random.Generator, columns: list[int]) -> LogisticRegression:
    X = gen.normal(size=(400, 2))
    y = (X.sum(axis=1) > 0).astype(np.int64)
    mask = np.zeros(2)
    mask[columns] = 1.0
    return LogisticRegression().fit(X * mask, y)  # zero weight on the columns it never saw


@pytest.fixture(scope="module")
def drifting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A store of the three models (and a held-out set from the past), and the stream."""
    gen = np.random.default_rng(7)
    store = ModelStore(tmp_path_factory.mktemp("drift") / "store")
    for name in MODELS:
        store.publish(name, past_model(gen, COLUMNS[name]), framework="sklearn")
    X_ho = gen.normal(size=(200, 2))
    store.publish_dataset("heldout", {"X": X_ho, "y": (X_ho.sum(axis=1) > 0).astype(np.int64)})
    X = gen.normal(size=(N_STREAM, 2))
    half = N_STREAM // 2
    y = np.r_[X[:half].sum(axis=1) > 0, X[half:, 1] - X[half:, 0] > 0].astype(np.int64)
    return store.root, X, y


def test_hedge_weight_moves_away_from_the_model_the_drift_hurt_most(
    drifting: tuple[Path, np.ndarray, np.ndarray],
    registry: CollectorRegistry,
) -> None:
    root, X, y = drifting
    at = len(y) // 2
    store = ModelStore(root)
    model_set = ModelSet(store, [ModelRef(name=n) for n in MODELS])
    strategies = build_strategies(store, model_set, StrategyRef(name="hedge"), [])
    metrics = Metrics(registry)
    joiner = LabelJoiner(model_set.layout, model_set.names, ["hedge"], LabelsSettings(), metrics)
    live = LiveAccuracy(joiner, True, metrics)
    pipeline = Pipeline(Serving(model_set, tuple(strategies)), ModelErrorPolicy(), 1 << 16)
    hedge = strategies[0].combiner
    weights: list[np.ndarray] = []  # the gauge after each labelled batch
    P_all = []
    try:
        for lo in range(0, len(y), BATCH):
            rows = range(lo, min(lo + BATCH, len(y)))
            values = [orjson.dumps({"id": i, "features": X[i].tolist()}) for i in rows]
            result = pipeline.process([Rec(i, v) for i, v in zip(rows, values, strict=True)])
            P_all.append(result.P)
            live.add_batch(result.ids, result.P, result.available, result.outputs, strategies)
            live.add_labels([orjson.dumps({"id": i, "label": int(y[i])}) for i in rows], strategies)
            metrics.set_strategy_weights("hedge", model_set.names, hedge.model_weights())
            weights.append(np.array([gauge(registry, m) for m in model_set.names]))
    finally:
        pipeline.close()
    P = np.concatenate(P_all, axis=1)
    right = P.argmax(axis=2) == y  # (n_models, n)
    drop = right[:, :at].mean(axis=1) - right[:, at:].mean(axis=1)
    hurt = int(np.argmax(drop))
    before = weights[at // BATCH - 1]  # the last batch wholly before the drift
    after = weights[-1]
    print(f"accuracy drop per model {dict(zip(MODELS, drop.round(3), strict=True))}; "
          f"hedge weights before {before.round(3)}, at the end {after.round(3)}")  # fmt: skip
    assert drop[hurt] > 0.05  # the drift really hurt it
    assert after[hurt] < before[hurt]
    assert after[hurt] == min(after)
    assert int(np.argmax(after)) == int(np.argmin(drop))  # the model the drift spared


def gauge(registry: Any, model: str) -> float:
    value = registry.get_sample_value(
        "streamfuse_strategy_weight", {"strategy": "hedge", "model": model}
    )
    assert value is not None
    return float(value)
