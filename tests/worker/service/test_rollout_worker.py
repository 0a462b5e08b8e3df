"""A rollout in the worker, without Kafka: the trained store, the real pipeline, labels joined
by id. A worse candidate is rolled back at its first step, a better one reaches 100% through
every step, an equal one waits where significance is required; two workers move a step once
and a restarted one serves the step in force."""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from model_store import ModelStore
from tests.worker.inference.test_pipeline import event, records
from worker.accuracy.gates import Gates
from worker.accuracy.labels import Joined
from worker.config import ModelErrorPolicy, StrategyRef, settings_from_dict
from worker.inference.arms import bucket_of, in_canary
from worker.inference.models import ModelSet
from worker.inference.pipeline import Pipeline
from worker.inference.serving import Serving
from worker.inference.strategies import Strategy, build_strategies
from worker.metrics import Metrics
from worker.service.rollout import Rollout
from worker.service.rollout_record import new_record

STEPS = [1, 5, 25, 50, 100]


class Constant:
    """A strategy that says class 0 for every event: clearly worse than soft voting."""

    def combine(self, P: np.ndarray, available: Any = None) -> np.ndarray:
        out = np.zeros(P.shape[1:])
        out[:, 0] = 1.0
        return out


class Same:
    """The champion's own strategy under another name: a candidate equal to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def combine(self, P: np.ndarray, available: Any = None) -> np.ndarray:
        return np.asarray(self.inner.combine(P, available=available))


def strategy(name: str, combiner: Any) -> Strategy:
    return Strategy(name, StrategyRef(name=name), combiner, "test", "strategy")


@pytest.fixture
def world(trained_copy: Any) -> dict[str, Any]:
    settings = settings_from_dict(
        {
            "store": str(trained_copy.root),
            "models": [{"name": n} for n in trained_copy.model_names],
            "strategy": {"name": "soft_vote"},
            "kafka": {"group_id": "grp"},
        },
        environ={},
    )
    store = ModelStore(trained_copy.root)
    model_set = ModelSet(store, settings.models)
    (soft,) = build_strategies(store, model_set, settings.strategy, [])
    test = store.load_dataset("test").arrays
    X = np.asarray(test["X"], dtype=np.float64)
    classes = [str(c) for c in store.manifest(model_set.names[0])["classes"]]
    y = np.array([classes.index(str(v)) for v in test["y"]])
    return {
        "settings": settings,
        "store": store,
        "model_set": model_set,
        "soft": soft,
        "X": X,
        "y": y,
    }


def start(store: ModelStore, candidate: dict[str, Any], **gates: Any) -> None:
    gates = {"min_labels": 60, "min_duration_s": 0, "alpha": 0.01, **gates}
    record = new_record(candidate, STEPS, Gates(**gates), "test", 0.0)
    store.publish_rollout("grp", record, expected=None)


def worker(world: dict[str, Any], strategies: tuple[Strategy, ...]) -> tuple[Any, ...]:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    pipeline = Pipeline(
        Serving(world["model_set"], strategies),
        ModelErrorPolicy(policy="renormalize"),
        max_event_bytes=1 << 16,
    )
    rollout = Rollout(world["store"], world["settings"], metrics, interval_s=0.0)
    return pipeline, rollout, registry


def serve(world: dict[str, Any], pipeline: Pipeline, rollout: Rollout, n: int, offset: int) -> Any:
    """One batch of ``n`` test rows (keys ``user-<i>``), published and labelled."""
    X, y = world["X"], world["y"]
    rows = (offset + np.arange(n)) % len(X)
    ids = [f"e{offset + i}" for i in range(n)]
    keys = [f"user-{offset + i}".encode() for i in range(n)]
    pipeline.arms = rollout.between_batches(pipeline)
    result = pipeline.process(
        records([event(i, X[r]) for i, r in zip(ids, rows, strict=True)], keys)
    )
    rollout.delivered(result)
    joined = Joined(ids, np.zeros((0, n, 3)), np.zeros((0, n), bool), {}, y[rows])
    rollout.joined(joined)
    return result, keys


def run(world: dict[str, Any], pipeline: Pipeline, rollout: Rollout, n_batches: int) -> list[Any]:
    out = []
    for b in range(n_batches):
        out.append(serve(world, pipeline, rollout, 64, b * 64))
    pipeline.arms = rollout.between_batches(pipeline)
    return out


def test_a_worse_candidate_is_rolled_back_at_its_first_step(world: dict[str, Any]) -> None:
    start(world["store"], {"strategy": "zero"})
    pipeline, rollout, registry = worker(world, (world["soft"], strategy("zero", Constant())))
    served = run(world, pipeline, rollout, 4)
    stored = world["store"].load_rollout("grp")
    assert stored is not None and stored.record["status"] == "rolled_back"
    last = stored.record["history"][-1]
    assert last["action"] == "rollback" and last["step"] == 0
    assert last["figures"]["p_worse"] < 0.01 and last["figures"]["candidate_score"] < 0.5
    assert rollout.arms is None and pipeline.arms is None
    assert registry.get_sample_value("streamfuse_rollout_share") == 0.0
    assert (
        registry.get_sample_value("streamfuse_rollout_decisions_total", {"action": "rollback"}) == 1
    )
    sample = registry.get_sample_value
    assert sample("streamfuse_rollout_labels") == last["figures"]["n"]
    scores = [sample("streamfuse_rollout_arm_score", {"arm": a}) for a in ("champion", "candidate")]
    assert scores == [last["figures"]["champion_score"], last["figures"]["candidate_score"]]
    assert sample("streamfuse_rollout_p_value", {"side": "worse"}) == last["figures"]["p_worse"]
    assert sample("streamfuse_rollout_candidate_p99_seconds") > 0
    # Never more than the first step's share of keys got the candidate's prediction.
    first, keys = served[0]
    canary = in_canary(bucket_of(keys), STEPS[0])
    assert [arm_of(p.value) for p in first.predictions] == [
        "candidate" if c else "champion" for c in canary
    ]
    for result, keys in served[1:]:
        arms = [arm_of(p.value) for p in result.predictions]
        canary = in_canary(bucket_of(keys), STEPS[0])
        assert arms in ([None] * len(keys), ["candidate" if c else "champion" for c in canary])
    after, _ = serve(world, pipeline, rollout, 16, 10_000)
    assert all(arm_of(p.value) is None for p in after.predictions)


def arm_of(value: bytes) -> str | None:
    arm = orjson.loads(value).get("arm")
    return None if arm is None else str(arm)


def test_a_better_candidate_reaches_every_key_through_every_step(world: dict[str, Any]) -> None:
    start(world["store"], {"strategy": "soft_vote"}, promote_if_better=True)
    pipeline, rollout, registry = worker(world, (strategy("zero", Constant()), world["soft"]))
    run(world, pipeline, rollout, 12)
    stored = world["store"].load_rollout("grp")
    assert stored is not None and stored.record["status"] == "done"
    actions = [(h["action"], h["share"]) for h in stored.record["history"]]
    assert actions == [
        ("start", 1.0),
        ("advance", 5.0),
        ("advance", 25.0),
        ("advance", 50.0),
        ("advance", 100.0),
        ("done", 100.0),
    ]
    assert registry.get_sample_value("streamfuse_rollout_decisions_total", {"action": "done"}) == 1
    assert registry.get_sample_value("streamfuse_rollout_share") == 100.0
    result, _ = serve(world, pipeline, rollout, 32, 50_000)
    assert {arm_of(p.value) for p in result.predictions} == {"candidate"}


def test_an_equal_candidate_waits_where_significance_is_required(world: dict[str, Any]) -> None:
    soft = world["soft"]
    start(world["store"], {"strategy": "twin"}, promote_if_better=True)
    pipeline, rollout, _ = worker(world, (soft, strategy("twin", Same(soft.combiner))))
    run(world, pipeline, rollout, 12)
    stored = world["store"].load_rollout("grp")
    assert stored is not None and stored.record["status"] == "running"
    assert stored.record["step"] == 3  # 50%: the step before the one that needs significance
    assert "not significantly better" in rollout.waiting


def test_two_workers_move_a_step_once_and_a_restart_serves_it(world: dict[str, Any]) -> None:
    soft = world["soft"]
    start(world["store"], {"strategy": "twin"})
    strategies = (soft, strategy("twin", Same(soft.combiner)))
    (p1, r1, reg1), (p2, r2, reg2) = worker(world, strategies), worker(world, strategies)
    for b in range(2):  # both see the same labelled events; neither has decided yet
        for p, r in ((p1, r1), (p2, r2)):
            serve(world, p, r, 40, b * 40)
    p1.arms = r1.between_batches(p1)  # 80 labels >= 60: advances
    p2.arms = r2.between_batches(p2)  # its own publish loses; it adopts the winner's
    p2.arms = r2.between_batches(p2)
    history = world["store"].rollout_history("grp")
    assert [h.record["step"] for h in history] == [0, 1]
    counts = [
        r.get_sample_value("streamfuse_rollout_decisions_total", {"action": "advance"})
        for r in (reg1, reg2)
    ]
    assert sorted(counts) == [0.0, 1.0]
    assert p1.arms is not None and p2.arms is not None and p1.arms.share == p2.arms.share == 5.0
    for reg in (reg1, reg2):  # the new step has seen no label yet (not the last step's 80)
        assert reg.get_sample_value("streamfuse_rollout_labels") == 0.0
    p3, r3, reg3 = worker(world, strategies)  # a restart
    result, keys = serve(world, p3, r3, 64, 0)
    arms = [arm_of(p.value) for p in result.predictions]
    assert arms == ["candidate" if c else "champion" for c in in_canary(bucket_of(keys), 5.0)]
    assert reg3.get_sample_value("streamfuse_rollout_step") == 1.0


@pytest.mark.slow
def test_a_model_version_candidate_is_promoted_when_done(world: dict[str, Any]) -> None:
    store, model_set = world["store"], world["model_set"]
    name = model_set.names[0]
    again = store.load(name)  # the same model published again, not promoted
    assert again.version == 1
    src = store.root / name / "1"
    dst = store.root / name / "2"
    shutil.copytree(src, dst)
    manifest = dst / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": 1', '"version": 2'))
    assert store.versions(name) == [1, 2] and store.active_version(name) == 1
    start(store, {"model": name, "version": 2}, min_labels=30)
    pipeline, rollout, registry = worker(world, (world["soft"],))
    assert rollout.between_batches(pipeline) is None  # the version loads on a thread
    assert rollout.wait(60)
    warmup = registry.get_sample_value("streamfuse_model_warmup_seconds", {"model": name})
    assert warmup is not None and warmup > 0  # warmed before it served
    run(world, pipeline, rollout, 8)
    stored = store.load_rollout("grp")
    assert stored is not None and stored.record["status"] == "done", stored.record["history"]
    assert store.active_version(name) == 2


@pytest.mark.slow
def test_a_candidate_version_that_cannot_be_loaded_is_rolled_back(world: dict[str, Any]) -> None:
    store, model_set = world["store"], world["model_set"]
    name = model_set.names[0]
    dst = store.root / name / "2"
    shutil.copytree(store.root / name / "1", dst)
    manifest = dst / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": 1', '"version": 2'))
    model_file = dst / "model.skops"
    model_file.write_bytes(model_file.read_bytes() + b"\0")  # no longer its checksum
    start(store, {"model": name, "version": 2})
    pipeline, rollout, registry = worker(world, (world["soft"],))
    assert rollout.between_batches(pipeline) is None
    assert rollout.wait(60)
    assert rollout.between_batches(pipeline) is None
    stored = store.load_rollout("grp")
    assert stored is not None and stored.record["status"] == "rolled_back"
    assert "candidate cannot be served" in stored.record["history"][-1]["why"]
    assert registry.get_sample_value("streamfuse_rollout_share") == 0.0


def test_the_worker_wires_the_rollout_between_batches_and_labels(
    trained_copy: Any, registry: CollectorRegistry
) -> None:
    """worker.service.worker: the step in force reaches the pipeline between batches, published
    batches and joined labels reach the rollout, and the worker moves the step."""
    from worker.delivery import Batch
    from worker.service.worker import Worker

    settings = settings_from_dict(
        {
            "store": str(trained_copy.root),
            "models": [{"name": n} for n in trained_copy.model_names],
            "strategy": {"name": "soft_vote"},
            "shadow_strategies": [{"name": "hard_vote"}],
            "topics": {"labels": "labels"},
            "kafka": {"group_id": "grp"},
        },
        environ={},
    )
    store = ModelStore(trained_copy.root)
    gates = Gates(min_labels=30, min_duration_s=0, alpha=1e-12)  # equal enough: never worse
    store.publish_rollout(
        "grp", new_record({"strategy": "hard_vote"}, [50, 100], gates, "t", 0), expected=None
    )
    worker = Worker(settings, registry)
    try:
        worker.between_batches()
        assert worker.pipeline.arms is not None and worker.pipeline.arms.share == 50.0
        test = store.load_dataset("test").arrays
        X, y = np.asarray(test["X"], dtype=np.float64), test["y"]  # wine's 36 test rows
        ids = [f"w{i}" for i in range(len(X))]
        keys = [i.encode() for i in ids]
        recs = records([event(i, row) for i, row in zip(ids, X, strict=True)], keys)
        result = worker.pipeline.process(recs)
        canary = in_canary(bucket_of(keys), 50.0)
        assert [arm_of(p.value) for p in result.predictions] == [
            "candidate" if c else "champion" for c in canary
        ]
        worker.account(Batch(list(recs), {}, 0.0, None), result)
        assert worker.accuracy is not None
        labels = [orjson.dumps({"id": i, "label": v.item()}) for i, v in zip(ids, y, strict=True)]
        worker.accuracy.add_labels(labels, worker.pipeline.serving.strategies)
        worker.rollout._next_read = 0.0
        worker.between_batches()
        stored = store.load_rollout("grp")
        assert stored is not None and stored.record["step"] == 1, stored.record["history"]
        assert stored.record["history"][-1]["figures"]["n"] == len(ids)
        assert worker.pipeline.arms is not None and worker.pipeline.arms.share == 100.0
    finally:
        worker.pipeline.close()
