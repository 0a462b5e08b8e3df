"""Both arms on every event: the candidate's rows published for the canary's keys only, every
prediction saying its arm (on a real trained store, without Kafka)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.linear_model import LogisticRegression

from model_store import ModelStore
from worker.config import ModelErrorPolicy, ModelRef, StrategyRef
from worker.inference.arms import bucket_of, event_keys, in_canary
from worker.inference.candidate import Arms
from worker.inference.models import ModelSet
from worker.inference.pipeline import Pipeline
from worker.inference.serving import Serving
from worker.inference.strategies import Strategy, build_strategies

from .test_pipeline import event, records

SHARE = 30.0


@pytest.fixture(scope="module")
def champion(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Serving:
    root = Path(tmp_path_factory.mktemp("rollout")) / "store"
    shutil.copytree(trained.root, root)
    store = ModelStore(root)
    model_set = ModelSet(store, [ModelRef(name=n) for n in trained.model_names])
    strategies = build_strategies(
        store, model_set, StrategyRef(name="soft_vote"), [StrategyRef(name="hard_vote")]
    )
    return Serving(model_set, tuple(strategies))


@pytest.fixture(scope="module")
def X(champion: Serving) -> np.ndarray:
    store = champion.model_set.store
    return np.asarray(store.load_dataset("test").arrays["X"], dtype=np.float64)


@pytest.fixture
def pipeline(champion: Serving) -> Iterator[Pipeline]:
    made = Pipeline(champion, ModelErrorPolicy(policy="renormalize"), max_event_bytes=1 << 16)
    yield made
    if made.arms is not None:
        made.arms.close()
    made.close()


def batch(X: np.ndarray) -> tuple[list[Any], list[bytes]]:
    """Every other event keyed; the others fall back to their id."""
    ids = [f"e{i}" for i in range(len(X))]
    keys = [f"user-{i}".encode() if i % 2 else None for i in range(len(X))]
    recs = records([event(i, row) for i, row in zip(ids, X, strict=True)], keys)
    return recs, event_keys(keys, ids)


def documents(result: Any) -> list[dict[str, Any]]:
    return [orjson.loads(p.value) for p in result.predictions]


def test_without_a_rollout_no_prediction_has_an_arm(pipeline: Pipeline, X: np.ndarray) -> None:
    recs, _ = batch(X[:10])
    result = pipeline.process(recs)
    assert result.arms is None
    assert all("arm" not in d for d in documents(result))


def test_a_strategy_candidate_serves_the_canary_keys_only(
    pipeline: Pipeline, champion: Serving, X: np.ndarray
) -> None:
    pipeline.arms = Arms(champion.with_active("hard_vote"), champion, SHARE)
    assert pipeline.arms.extra == ()
    recs, keys = batch(X)
    result = pipeline.process(recs)
    canary = in_canary(bucket_of(keys), SHARE)
    assert 0 < canary.sum() < len(X)
    docs = documents(result)
    assert [d["arm"] for d in docs] == ["candidate" if c else "champion" for c in canary]
    soft, hard = result.outputs["soft_vote"], result.outputs["hard_vote"]
    assert result.arms is not None and result.arms.candidate is not None
    np.testing.assert_array_equal(result.arms.champion, soft)
    np.testing.assert_array_equal(result.arms.candidate, hard)  # on every event, not only canary
    expected = np.where(canary[:, None], hard, soft)
    classes = champion.layout.blocks[0].classes
    assert classes is not None
    labels = [classes[i] for i in expected.argmax(axis=1)]
    assert [d["prediction"] for d in docs] == labels
    np.testing.assert_allclose([d["scores"] for d in docs], expected, rtol=1e-12)


def test_a_model_version_candidate_is_predicted_beside_the_champion(
    pipeline: Pipeline, champion: Serving, X: np.ndarray
) -> None:
    store = champion.model_set.store
    name = champion.names[0]
    y = np.asarray(store.load_dataset("test").arrays["y"])
    classes = store.manifest(name)["classes"]
    version = store.publish(
        name, LogisticRegression(C=1e-4, max_iter=2000).fit(X, y), classes=classes, promote=False
    )
    loaded = store.load(name, version)
    candidate = Serving(champion.model_set.replaced(loaded), champion.strategies)
    pipeline.arms = Arms(candidate, champion, SHARE)
    assert pipeline.arms.extra == (0,)
    recs, keys = batch(X)
    result = pipeline.process(recs)
    assert result.arms is not None and result.arms.candidate is not None
    P = np.stack([fn(X) for fn in champion.predict_fns])
    P[0] = loaded.predict_outputs(X)
    expected = champion.active.combiner.combine(P)
    np.testing.assert_allclose(result.arms.candidate, expected, rtol=1e-12)
    assert not np.allclose(expected, result.outputs["soft_vote"])
    canary = in_canary(bucket_of(keys), SHARE)
    published = np.array([d["scores"] for d in documents(result)])
    np.testing.assert_allclose(published[canary], expected[canary], rtol=1e-12)
    np.testing.assert_allclose(published[~canary], result.outputs["soft_vote"][~canary], rtol=1e-12)
    assert result.arms.seconds > 0


class _Boom:
    def combine(self, P: np.ndarray, available: Any = None) -> np.ndarray:
        raise RuntimeError("candidate broke")


def test_a_failing_candidate_leaves_every_event_to_the_champion(
    pipeline: Pipeline, champion: Serving, X: np.ndarray
) -> None:
    boom = Strategy("boom", StrategyRef(name="boom"), _Boom(), "test", "strategy")  # type: ignore[arg-type]
    pipeline.arms = Arms(Serving(champion.model_set, (boom,)), champion, 100.0)
    recs, _ = batch(X[:20])
    result = pipeline.process(recs)
    assert result.arms is not None and result.arms.candidate is None
    assert result.arms.error is not None and "candidate broke" in result.arms.error
    docs = documents(result)
    assert {d["arm"] for d in docs} == {"champion"}
    np.testing.assert_allclose([d["scores"] for d in docs], result.outputs["soft_vote"])


def test_arms_built_from_another_snapshot_are_not_used(
    pipeline: Pipeline, champion: Serving, X: np.ndarray
) -> None:
    other = champion.with_active("hard_vote")
    pipeline.arms = Arms(other, other, 100.0)  # the champion was swapped since
    result = pipeline.process(batch(X[:5])[0])
    assert result.arms is None and all("arm" not in d for d in documents(result))
