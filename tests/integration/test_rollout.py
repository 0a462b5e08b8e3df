"""A rollout against the real broker: a clearly worse candidate is rolled back at its first
step, only the canary's keys ever get its predictions, and every prediction's ``arm`` is the
hash of its key at the step in force.

breast_cancer's test rows (``trained_store``); the champion is ``soft_vote`` (111 of 114
right), the candidate a ``weighted_sum`` of the random forest alone with a bias of 5 on class 0,
which says "malignant" for every event (43 of 114 are): it is wrong wherever the champion is
right on the 68 benign events, so the paired test rejects it within the first labels.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

import numpy as np
import orjson
import pytest
import yaml

from model_store import ModelStore
from tests.integration.test_promotion import labelled, value
from tests.support.kafka import wait_for
from tests.support.scenario import Scenario
from tests.support.worker import produce
from worker.accuracy.gates import Gates
from worker.inference.arms import bucket_of, in_canary
from worker.service.rollout_record import new_record

pytestmark = pytest.mark.kafka

BAD = {"name": "weighted_sum", "params": {"weights": [1, 0, 0, 0], "bias": [5.0, 0.0]}}
STEPS = [1, 5, 25, 50, 100]


def test_a_worse_candidate_is_rolled_back_at_its_first_step(
    scenario: Callable[..., Scenario],
) -> None:
    s = scenario(partitions=2, group="rollout")
    store_dir = s.tmp_path / "model-store"
    shutil.copytree(s.store, store_dir)
    store = ModelStore(store_dir)
    test = store.load_dataset("test").arrays
    t = s.topics
    path = s.config(
        store=store_dir,
        shadows=(),
        batch={"max_events": 32, "max_wait_ms": 20},
    )
    config = yaml.safe_load(path.read_text())
    config["shadow_strategies"] = [BAD]
    path.write_text(yaml.safe_dump(config))
    gates = Gates(min_labels=150, min_duration_s=0, alpha=0.001)
    record = new_record({"strategy": "weighted_sum"}, STEPS, gates, "test", 0.0)
    store.publish_rollout(s.group, record, expected=None)

    worker = s.worker(path, "w.log")
    try:
        worker.wait_assigned(timeout=240)
        wait_for(
            lambda: value(path, "streamfuse_rollout_share") == 1.0,
            timeout=60,
            what="the worker serving the rollout's first step",
        )
        X, y = np.tile(test["X"], (2, 1)), np.tile(test["y"], 2)  # 228 events
        ids, values, labels = labelled(X, y, "r")
        keys = [i.encode() for i in ids]
        produce(s.kafka.bootstrap, t.input, values, keys)
        produce(s.kafka.bootstrap, t.labels, labels, keys)
        wait_for(
            lambda: ModelStore(store_dir).load_rollout(s.group).record["status"] == "rolled_back",  # type: ignore[union-attr]
            timeout=120,
            what="the rollout rolled back",
        )
        wait_for(
            lambda: value(path, "streamfuse_rollout_share") == 0.0,
            timeout=30,
            what="the worker back to share 0",
        )
        decided = value(path, "streamfuse_rollout_decisions_total", action="rollback")
        ids2, values2, _ = labelled(test["X"][:20], test["y"][:20], "after")
        produce(s.kafka.bootstrap, t.input, values2, [i.encode() for i in ids2])
        out = s.kafka.consume_all(t.output, len(ids) + 20, timeout=60)
    finally:
        worker.stop()
    stored = ModelStore(store_dir).load_rollout(s.group)
    assert stored is not None
    last = stored.record["history"][-1]
    assert last["action"] == "rollback" and last["step"] == 0
    # at the first look every label may have joined: rolled back on them, below min_labels or not
    assert last["figures"]["p_worse"] < 0.001 and 0 < last["figures"]["n"] <= len(ids)
    assert decided == 1.0
    docs = {r.key: orjson.loads(r.value) for r in out}
    assert len(docs) == len(ids) + 20
    served = [k for k in keys if "arm" in docs[k]]
    assert served, "no prediction was published while the rollout ran"
    canary = dict(zip(served, in_canary(bucket_of(served), STEPS[0]).tolist(), strict=True))
    for key in served:
        assert docs[key]["arm"] == ("candidate" if canary[key] else "champion"), key
    n_candidate = sum(docs[k]["arm"] == "candidate" for k in served)
    assert n_candidate <= sum(canary.values()) <= 0.05 * len(served) + 3
    after = [docs[i.encode()] for i in ids2]
    assert all("arm" not in d for d in after)
    assert "rollout" in worker.text() and "rollback" in worker.text()
