"""Rollouts against the real broker that are not rolled back: a clearly better candidate ramps
through every step to 100%, one equal to the champion holds at the step that requires
significance, a key's arm is the same across a worker restart (at_least_once, and the
exactly_once run read committed) and when a second worker joins the group, and two workers
take each step within the rollout's read interval of each other.

breast_cancer's test rows (``trained_store``, 114 events). The better scenario turns
test_rollout.py's weak strategy into the champion (a ``weighted_sum`` of the random forest with
a bias of 5 on class 0: "malignant" for every event, 43 of 114 right) and rolls out
``soft_vote`` (111 of 114). The equal scenario rolls out ``weighted_average`` with equal
weights against ``soft_vote``: both are the mean of the models' probabilities, so the arms
never disagree and the paired test has nothing to reject or accept.

Each wave of events is published and read back before its labels are produced, so every wave
is served at one step; its labels are the step's evidence (a step's evidence starts empty).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer

from model_store import ModelStore
from tests.integration.test_promotion import labelled, value
from tests.integration.test_rollout import BAD
from tests.support.kafka import Broker, wait_for
from tests.support.worker import WorkerProcess, free_port, produce, write_config
from worker.accuracy.gates import Gates
from worker.inference.arms import bucket_of, in_canary, threshold
from worker.service.rollout import READ_INTERVAL_S
from worker.service.rollout_record import new_record

pytestmark = pytest.mark.kafka


def _setup(
    tmp_path: Path,
    kafka: Broker,
    topics: Any,
    group_factory: Any,
    trained_store: Path,
    strategy: dict[str, Any],
    shadow: dict[str, Any],
    kafka_section: dict[str, Any] | None = None,
) -> tuple[Path, Any, str, Path, dict[str, np.ndarray]]:
    store_dir = tmp_path / "model-store"
    shutil.copytree(trained_store, store_dir)
    test = ModelStore(store_dir).load_dataset("test").arrays
    t = topics(partitions=2)
    group = group_factory("rollout")
    path = write_config(
        tmp_path / "c.yaml",
        store=store_dir,
        bootstrap=kafka.bootstrap,
        topics=t,
        group=group,
        shadows=(),
        batch={"max_events": 32, "max_wait_ms": 20},
        **({"kafka": kafka_section} if kafka_section else {}),
    )
    config = yaml.safe_load(path.read_text())
    config["strategy"] = strategy
    config["shadow_strategies"] = [shadow]
    path.write_text(yaml.safe_dump(config))
    return store_dir, t, group, path, test


def _second_worker(path: Path) -> Path:
    """The config at ``path`` for a second worker of the group: its own id and /metrics."""
    config = yaml.safe_load(path.read_text())
    config["kafka"]["instance_id"] = "1"
    config["metrics"]["port"] = free_port()
    second = path.with_name("c2.yaml")
    second.write_text(yaml.safe_dump(config))
    return second


def _record(store_dir: Path, group: str) -> dict[str, Any]:
    stored = ModelStore(store_dir).load_rollout(group)
    assert stored is not None
    return stored.record


class _Waves:
    """Waves of the test rows under fresh keys: published, read back, then labelled."""

    def __init__(self, kafka: Broker, t: Any, test: dict[str, np.ndarray]) -> None:
        self.kafka, self.t, self.test = kafka, t, test
        self.published = 0

    def serve(
        self, prefix: str, n: int | None = None
    ) -> tuple[list[bytes], dict[bytes, dict[str, Any]], list[bytes]]:
        """Publish one wave (the first ``n`` rows, default all); its keys, every output read
        so far by key, and its labels."""
        ids, values, labels = labelled(self.test["X"][:n], self.test["y"][:n], prefix)
        keys = [i.encode() for i in ids]
        produce(self.kafka.bootstrap, self.t.input, values, [*keys])
        self.published += len(keys)
        out = self.kafka.consume_all(self.t.output, self.published, timeout=90)
        return keys, {r.key: orjson.loads(r.value) for r in out}, labels

    def label(self, keys: list[bytes], labels: list[bytes]) -> None:
        produce(self.kafka.bootstrap, self.t.labels, labels, [*keys])


def _arms_at(docs: dict[bytes, dict[str, Any]], keys: list[bytes], share: float) -> None:
    """Every key's ``arm`` is the candidate's exactly where its bucket is in the canary."""
    canary = in_canary(bucket_of(keys), share).tolist()
    arms = [docs[k].get("arm") for k in keys]
    expected = ["candidate" if c else "champion" for c in canary]
    assert arms == expected, f"arms at {share}%: {sum(canary)} keys in the canary"


def test_a_better_candidate_reaches_all_keys_through_every_step(
    kafka: Broker, topics: Any, group_factory: Any, trained_store: Path, tmp_path: Path
) -> None:
    steps = [1, 5, 25, 50, 100]
    store_dir, t, group, path, test = _setup(
        tmp_path, kafka, topics, group_factory, trained_store, BAD, {"name": "soft_vote"}
    )
    # promote_if_better: the moves to 100% and to done need the candidate significantly better
    gates = Gates(min_labels=60, min_duration_s=0, alpha=0.001, promote_if_better=True)
    record = new_record({"strategy": "soft_vote"}, steps, gates, "test", 0.0)
    store = ModelStore(store_dir)
    store.publish_rollout(group, record, expected=None)
    waves = _Waves(kafka, t, test)

    worker = WorkerProcess(path, tmp_path / "w.log").start()
    try:
        worker.wait_assigned(timeout=240)
        wait_for(
            lambda: value(path, "streamfuse_rollout_share") == 1.0,
            timeout=60,
            what="the worker serving the rollout's first step",
        )
        for i, share in enumerate(steps):
            keys, docs, labels = waves.serve(f"s{i}")
            _arms_at(docs, keys, share)
            assert value(path, "streamfuse_rollout_step") == i
            waves.label(keys, labels)
            wait_for(
                lambda i=i: len(_record(store_dir, group)["history"]) == i + 2,  # type: ignore[misc]
                timeout=90,
                what=f"the move from step {i} ({share}%)",
            )
        keys, docs, _ = waves.serve("done")
        _arms_at(docs, keys, 100.0)
        decisions = {
            a: value(path, "streamfuse_rollout_decisions_total", action=a)
            for a in ("advance", "done", "rollback")
        }
    finally:
        worker.stop()
    final = _record(store_dir, group)
    assert final["status"] == "done"
    history = final["history"]
    assert [h["action"] for h in history] == [
        "start",
        "advance",
        "advance",
        "advance",
        "advance",
        "done",
    ]
    assert [h["share"] for h in history] == [1.0, 5.0, 25.0, 50.0, 100.0, 100.0]
    for move in history[1:]:
        figures = move["figures"]
        assert figures["n"] >= gates.min_labels
        assert figures["candidate_score"] > figures["champion_score"]
    # the moves to the last step and to done were made on significance
    assert history[-2]["figures"]["p_better"] < gates.alpha
    assert history[-1]["figures"]["p_better"] < gates.alpha
    assert decisions == {"advance": 4.0, "done": 1.0, "rollback": 0.0}


def test_an_equal_candidate_holds_at_the_step_that_requires_significance(
    kafka: Broker, topics: Any, group_factory: Any, trained_store: Path, tmp_path: Path
) -> None:
    steps = [1, 50, 100]  # from 50% the next move reaches the last step: significance needed
    store_dir, t, group, path, test = _setup(
        tmp_path,
        kafka,
        topics,
        group_factory,
        trained_store,
        {"name": "soft_vote"},
        {"name": "weighted_average"},
    )
    gates = Gates(min_labels=60, min_duration_s=0, alpha=0.05, promote_if_better=True)
    record = new_record({"strategy": "weighted_average"}, steps, gates, "test", 0.0)
    ModelStore(store_dir).publish_rollout(group, record, expected=None)
    waves = _Waves(kafka, t, test)

    worker = WorkerProcess(path, tmp_path / "w.log").start()
    try:
        worker.wait_assigned(timeout=240)
        wait_for(
            lambda: value(path, "streamfuse_rollout_share") == 1.0,
            timeout=60,
            what="the worker serving the rollout's first step",
        )
        # 80 labels at 1%, so the 114 awaited below can only be the next step's (the gauge
        # keeps the last look's count until a look at the new step)
        keys, docs, labels = waves.serve("s0", 80)
        _arms_at(docs, keys, 1.0)
        waves.label(keys, labels)
        wait_for(
            lambda: len(_record(store_dir, group)["history"]) == 2,
            timeout=90,
            what="the move from 1% (no significance needed)",
        )
        keys, docs, labels = waves.serve("s1")
        _arms_at(docs, keys, 50.0)
        waves.label(keys, labels)
        # every label of the wave joined and looked at: well over min_labels at this step
        wait_for(
            lambda: value(path, "streamfuse_rollout_labels") == len(keys),
            timeout=90,
            what="all the wave's labels in the step's evidence",
        )
        held = _record(store_dir, group)
        scores = {
            a: value(path, "streamfuse_rollout_arm_score", arm=a) for a in ("champion", "candidate")
        }
        p_better = value(path, "streamfuse_rollout_p_value", side="better")
        # more looks at the full evidence while another wave is served: still at 50%
        keys2, docs, _ = waves.serve("s2")
        _arms_at(docs, keys2, 50.0)
        step = value(path, "streamfuse_rollout_step")
    finally:
        worker.stop()
    for record_now in (held, _record(store_dir, group)):
        assert record_now["status"] == "running" and record_now["step"] == 1
        assert [h["action"] for h in record_now["history"]] == ["start", "advance"]
    assert step == 1
    assert scores["champion"] == scores["candidate"]
    assert p_better >= gates.alpha


@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_keys_arm_is_the_same_across_a_worker_restart(
    kafka: Broker,
    topics: Any,
    group_factory: Any,
    trained_store: Path,
    tmp_path: Path,
    guarantee: str,
) -> None:
    """Also the exactly_once run: read committed, every event published once, none lost."""
    share = 25.0
    store_dir, t, group, path, test = _setup(
        tmp_path,
        kafka,
        topics,
        group_factory,
        trained_store,
        {"name": "soft_vote"},
        BAD,
        {"processing_guarantee": guarantee},
    )
    # no labels are produced: the rollout holds at its first step throughout
    gates = Gates(min_labels=1000, min_duration_s=0, alpha=0.001)
    record = new_record({"strategy": "weighted_sum"}, [share, 100], gates, "test", 0.0)
    ModelStore(store_dir).publish_rollout(group, record, expected=None)
    ids, values, _ = labelled(test["X"], test["y"], "before")
    keys: list[bytes | None] = [f"user-{i}".encode() for i in range(len(ids))]
    ids2, values2, _ = labelled(test["X"], test["y"], "after")
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"

    for values_now in (values, values2):  # the same keys, before and after the restart
        worker = WorkerProcess(path, tmp_path / "w.log").start()
        try:
            worker.wait_assigned(timeout=240)
            wait_for(
                lambda: value(path, "streamfuse_rollout_share") == share,
                timeout=60,
                what="the worker serving the rollout's first step",
            )
            produce(kafka.bootstrap, t.input, values_now, keys)
            expected = len(ids) * (1 if values_now is values else 2)
            out = kafka.consume_all(t.output, expected, timeout=90, isolation_level=isolation)
        finally:
            worker.stop()  # SIGTERM, as a deployment stops it
        assert worker.proc is not None and worker.proc.returncode == 0
    published = [orjson.loads(r.value)["id"] for r in out]
    if guarantee == "exactly_once":  # 0 lost, 0 duplicates, across the restart
        out = kafka.consume_all(t.output, len(published), 60, isolation, idle_s=3)
        assert sorted(orjson.loads(r.value)["id"] for r in out) == sorted(ids + ids2)
    assert set(published) == set(ids + ids2)  # none lost
    arms: dict[str, dict[bytes, str]] = {"before": {}, "after": {}}
    for r in out:
        doc = orjson.loads(r.value)
        arms[doc["id"].split("-")[0]][r.key] = doc["arm"]
    served = [k for k in keys if k is not None]
    canary = in_canary(bucket_of(served), share).tolist()
    expected_arms = {
        k: "candidate" if c else "champion" for k, c in zip(served, canary, strict=True)
    }
    assert 0 < sum(canary) < len(served)
    assert arms["after"] == arms["before"]  # each key's arm unchanged by the restart
    assert arms["before"] == expected_arms
    assert arms["after"] == expected_arms
    assert _record(store_dir, group)["history"][-1]["action"] == "start"


@pytest.mark.slow
def test_a_keys_arm_is_the_same_when_a_second_worker_joins(
    kafka: Broker, topics: Any, group_factory: Any, trained_store: Path, tmp_path: Path
) -> None:
    share = 25.0
    store_dir, t, group, path, test = _setup(
        tmp_path,
        kafka,
        topics,
        group_factory,
        trained_store,
        {"name": "soft_vote"},
        BAD,
        {"instance_id": "0", "consumer": {"session_timeout_ms": 6000}},
    )
    path2 = _second_worker(path)
    # no labels are produced: the rollout holds at its first step throughout
    gates = Gates(min_labels=1000, min_duration_s=0, alpha=0.001)
    record = new_record({"strategy": "weighted_sum"}, [share, 100], gates, "test", 0.0)
    ModelStore(store_dir).publish_rollout(group, record, expected=None)
    keys: list[bytes | None] = [f"user-{i}".encode() for i in range(len(test["X"]))]
    ids, values, _ = labelled(test["X"], test["y"], "before")
    ids2, values2, _ = labelled(test["X"], test["y"], "after")

    def at_share(config: Path) -> None:
        wait_for(
            lambda: value(config, "streamfuse_rollout_share") == share,
            timeout=60,
            what="the worker serving the rollout's first step",
        )

    first = WorkerProcess(path, tmp_path / "w1.log").start()
    second: WorkerProcess | None = None
    try:
        first.wait_assigned(timeout=240)
        at_share(path)
        produce(kafka.bootstrap, t.input, values, keys)
        kafka.consume_all(t.output, len(ids), timeout=90)
        alone = value(path, "streamfuse_events_published_total")
        second = WorkerProcess(path2, tmp_path / "w2.log").start()
        second.wait_assigned(timeout=240)  # the group rebalanced: one partition each
        at_share(path2)
        produce(kafka.bootstrap, t.input, values2, keys)
        out = kafka.consume_all(t.output, len(ids) + len(ids2), timeout=90)

        def by_worker() -> list[float]:
            return [
                value(path, "streamfuse_events_published_total") - alone,
                value(path2, "streamfuse_events_published_total"),
            ]

        wait_for(lambda: sum(by_worker()) >= len(ids2), timeout=30, what="both workers' counts")
        published = by_worker()
    finally:
        for worker in (second, first):
            if worker is not None:
                worker.stop()
    assert alone == len(ids)
    assert all(n > 0 for n in published)  # both workers served keys after the join
    arms: dict[str, dict[bytes, str]] = {"before": {}, "after": {}}
    for r in out:
        doc = orjson.loads(r.value)
        arms[doc["id"].split("-")[0]][r.key] = doc["arm"]
    served = [k for k in keys if k is not None]
    canary = in_canary(bucket_of(served), share).tolist()
    expected_arms = {
        k: "candidate" if c else "champion" for k, c in zip(served, canary, strict=True)
    }
    assert 0 < sum(canary) < len(served)
    assert arms["after"] == arms["before"]  # each key's arm unchanged by the join
    assert arms["before"] == expected_arms
    assert arms["after"] == expected_arms


def _markers(steps: list[float], per_step: int) -> dict[bytes, tuple[int, int]]:
    """Keys whose arm says whether a worker serves step ``i`` yet: their buckets lie between
    the shares of steps ``i - 1`` and ``i`` (the candidate serves them from step ``i`` on).
    Key: (partition it is sent to, step index)."""
    pool = [f"marker-{j}".encode() for j in range(20_000)]
    buckets = bucket_of(pool)
    chosen: dict[bytes, tuple[int, int]] = {}
    for i in range(1, len(steps)):
        low, high = threshold(steps[i - 1]), threshold(steps[i])
        inside = [k for k, b in zip(pool, buckets.tolist(), strict=True) if low <= b < high]
        for p in (0, 1):
            for key in inside[p * per_step : (p + 1) * per_step]:
                chosen[key] = (p, i)
    return chosen


def test_two_workers_serve_the_same_step_within_the_read_interval(
    kafka: Broker, topics: Any, group_factory: Any, trained_store: Path, tmp_path: Path
) -> None:
    """Two workers of one group, one partition each: a better candidate moves through every
    step on the labels of one worker's events, while a marker stream sends both, every 0.1 s,
    keys whose arm tells the step each serves. From the outputs: each worker takes each step
    once, for good, and the other takes it within the rollout's read interval (1 s) plus a
    batch of the first."""
    steps = [5.0, 25.0, 50.0, 100.0]
    store_dir, t, group, path, test = _setup(
        tmp_path,
        kafka,
        topics,
        group_factory,
        trained_store,
        BAD,
        {"name": "soft_vote"},
        {"instance_id": "0", "consumer": {"session_timeout_ms": 6000}},
    )
    path2 = _second_worker(path)
    # each step lasts 2 s at least: the other worker reads the record in it (a step that
    # moves on within 1 s may be skipped by a worker, which then serves the next one)
    gates = Gates(min_labels=40, min_duration_s=2.0, alpha=0.001)
    record = new_record({"strategy": "soft_vote"}, steps, gates, "test", 0.0)
    ModelStore(store_dir).publish_rollout(group, record, expected=None)
    markers = _markers(steps, per_step=2)
    row = test["X"][0].tolist()
    stop = threading.Event()

    sent: list[str] = []

    def to_partition_0(values: list[bytes], keys: list[bytes | None]) -> None:
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5)
        for key, value_ in zip(keys, values, strict=True):
            producer.send(t.input, key=key, value=value_, partition=0)
        producer.flush()
        producer.close()

    def send_markers() -> None:
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5)
        n = 0
        while not stop.is_set():
            for key, (partition, _) in markers.items():
                doc = {"id": f"m{n}-{key.decode()}", "features": row, "ts": time.time()}
                producer.send(t.input, key=key, value=orjson.dumps(doc), partition=partition)
                sent.append(doc["id"])
            producer.flush()
            n += 1
            stop.wait(0.1)
        producer.close()

    outputs: list[Any] = []

    def read_outputs() -> None:
        consumer = KafkaConsumer(
            t.output, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None,
        )  # fmt: skip
        while not done_reading.is_set():
            for records in consumer.poll(timeout_ms=200).values():
                outputs.extend(records)
        consumer.close()

    def served() -> set[str]:
        return {orjson.loads(r.value)["id"] for r in list(outputs)}

    done_reading = threading.Event()
    workers = [
        WorkerProcess(p, tmp_path / f"w{i}.log").start() for i, p in enumerate((path, path2))
    ]
    threads = [
        threading.Thread(target=send_markers, name="markers", daemon=True),
        threading.Thread(target=read_outputs, name="outputs", daemon=True),
    ]
    try:
        for worker in workers:
            worker.wait_assigned(timeout=240)
        wait_for(
            lambda: (
                [value(c, "streamfuse_assigned_partitions") for c in (path, path2)] == [1, 1]
                and [value(c, "streamfuse_rollout_share") for c in (path, path2)] == [steps[0]] * 2
            ),
            timeout=90,
            what="both workers on one partition each, serving the first step",
        )
        for thread in threads:
            thread.start()
        for i in range(len(steps)):
            # every wave to partition 0: one worker has the evidence and decides, the other
            # learns of each move only by reading the record
            ids, values, labels = labelled(test["X"], test["y"], f"s{i}")
            keys: list[bytes | None] = [k.encode() for k in ids]
            to_partition_0(values, keys)
            wait_for(lambda ids=ids: set(ids) <= served(), timeout=90, what=f"wave {i} served")  # type: ignore[misc]
            produce(kafka.bootstrap, t.labels, labels, keys)
            wait_for(
                lambda i=i: len(_record(store_dir, group)["history"]) == i + 2,  # type: ignore[misc]
                timeout=90,
                what=f"the move from step {i} ({steps[i]}%)",
            )
        stop.set()
        threads[0].join(10)
        wait_for(lambda: set(sent) <= served(), timeout=60, what="every marker served")
    finally:
        stop.set()
        done_reading.set()
        for worker in workers:
            worker.stop()
    threads[1].join(10)
    out = list(outputs)
    history = _record(store_dir, group)["history"]
    assert [h["action"] for h in history] == ["start", "advance", "advance", "advance", "done"]
    seen: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for r in out:
        if r.key not in markers:
            continue
        arm = orjson.loads(r.value).get("arm")
        if arm is not None:  # none once the rollout is done
            seen.setdefault(markers[r.key], []).append((r.timestamp, arm))
    took: dict[tuple[int, int], int] = {}
    for (partition, i), served in seen.items():
        served.sort()
        arms = [a for _, a in served]
        assert "candidate" in arms, (partition, i, {k: len(v) for k, v in seen.items()}, arms[-5:])
        first = arms.index("candidate")  # every step was taken while markers ran
        assert set(arms[:first]) == {"champion"} and set(arms[first:]) == {"candidate"}, (
            f"partition {partition} went back and forth at step {i}"
        )
        took[partition, i] = served[first][0]
    assert set(took) == {(p, i) for p in (0, 1) for i in range(1, len(steps))}
    gaps = [abs(took[0, i] - took[1, i]) / 1000 for i in range(1, len(steps))]
    bound = READ_INTERVAL_S + 1.0  # the other reads the record within 1 s, then a batch
    assert max(gaps) <= bound, f"the workers took the steps {gaps} s apart"
