"""``output.explain`` and ``streamfuse_strategy_weight`` on the trained store: every prediction's
per-model contributions add up to its published scores; every strategy's weights are exported."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from model_store import ModelStore
from worker.config import ModelErrorPolicy, ModelRef, StrategyRef, settings_from_dict
from worker.inference.models import ModelSet
from worker.inference.pipeline import Pipeline
from worker.inference.serving import Serving
from worker.inference.strategies import build_strategies
from worker.service.worker import Worker

EXPLAINED = ("soft_vote", "hard_vote", "weighted_average", "weighted_sum", "stacking",
             "select_best", "hedge")  # fmt: skip


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = "f", 0, offset, None, value


@pytest.fixture(scope="module")
def model_set(trained: Any) -> ModelSet:
    store = ModelStore(trained.root)
    return ModelSet(store, [ModelRef(name=n) for n in trained.model_names])


@pytest.mark.parametrize("active", EXPLAINED)
def test_contributions_add_up_to_every_published_score(
    trained: Any, model_set: ModelSet, active: str
) -> None:
    store = ModelStore(trained.root)
    strategies = build_strategies(store, model_set, StrategyRef(name=active), [])
    pipeline = Pipeline(
        Serving(model_set, tuple(strategies)), ModelErrorPolicy(), 1 << 16, explain=True
    )
    X = np.asarray(store.load_dataset("test").arrays["X"], dtype=np.float64)[:40]
    try:
        values = [orjson.dumps({"id": i, "features": row.tolist()}) for i, row in enumerate(X)]
        result = pipeline.process([Rec(i, v) for i, v in enumerate(values)])
    finally:
        pipeline.close()
    assert len(result.predictions) == len(X)
    for record in result.predictions:
        doc = orjson.loads(record.value)
        explain = doc["explain"]
        assert sorted(explain["models"]) == sorted(model_set.names)
        terms = np.array(list(explain["models"].values())).sum(axis=0)
        base = np.array([-np.inf if b is None else b for b in explain["base"]])
        total = terms + base
        if explain["link"] == "softmax":
            total = np.exp(total - total.max()) / np.exp(total - total.max()).sum()
        np.testing.assert_allclose(total, doc["scores"], rtol=0, atol=1e-9)


def test_no_explain_by_default_and_weights_of_every_strategy(
    trained: Any, registry: CollectorRegistry
) -> None:
    config = {
        "store": str(trained.root),
        "models": [{"name": n} for n in trained.model_names],
        "strategy": {"name": "stacking"},
        "shadow_strategies": [{"name": s} for s in trained.strategy_names if s != "stacking"],
    }
    settings = settings_from_dict(config, environ={})
    assert settings.output.explain is False
    worker = Worker(settings, registry)
    worker.pipeline.close()
    for strategy in worker.serving.strategies:
        weights = [
            registry.get_sample_value(
                "streamfuse_strategy_weight", {"strategy": strategy.name, "model": model}
            )
            for model in trained.model_names
        ]
        expected = strategy.combiner.model_weights()
        np.testing.assert_allclose(weights, expected)
    hedge = next(s for s in worker.serving.strategies if s.name == "hedge").combiner
    assert sum(
        registry.get_sample_value("streamfuse_strategy_weight", {"strategy": "hedge", "model": m})
        for m in trained.model_names
    ) == pytest.approx(1.0)
    assert hedge.n_updates_ >= 1


def test_a_bad_output_key_is_named() -> None:
    from worker.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        settings_from_dict(
            {"models": [{"name": "a"}], "strategy": {"name": "soft_vote"},
             "output": {"explian": True}},
            environ={},
        )  # fmt: skip
    assert info.value.key == "output.explian"
