"""The input topic deleted, then created again under the same name (issue 22): noticed by its id,
shown on ``/readyz`` and the metrics while missing, and the consumer reset once it is back, so
the new topic is read from its start, not from the old topic's positions.

The watch's decisions are pure; the recovery runs the real loop, delivery and lag monitor on the
in-memory transport (tests/support/fake_transport.py), whose topic can be deleted and created
again. The broker test is tests/integration/test_input_topic_recreated.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.fake_transport import FakeAdmin, FakeSink, FakeSource, Log
from tests.worker.service.test_loop import (  # noqa: F401  (pipeline and serving are fixtures)
    filled,
    make_loop,
    pipeline,
    published_ids,
    serving,
    values,
)
from worker.config import settings_from_dict
from worker.inference.pipeline import Pipeline
from worker.metrics import Metrics
from worker.service.consumer import RenewableSource, tend
from worker.service.health import Health
from worker.service.input_topic import InputTopicWatch, TopicChange
from worker.service.lag import LagMonitor
from worker.service.watchdog import Watchdog
from worker.transport import TopicPartition


def test_a_deleted_topic_asks_for_one_reset_and_its_return_for_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = InputTopicWatch("in")
    assert watch.observe("a") is None  # the first answer: nothing to compare with
    assert watch.observe("a") is None and watch.take_reset() is None
    with caplog.at_level(logging.WARNING, "streamfuse.kafka"):
        assert watch.observe(None) is TopicChange.DELETED
        assert watch.missing() == "the input topic 'in' does not exist"
        assert watch.observe(None) is None  # said once
        assert watch.take_reset() is TopicChange.DELETED  # drop the old positions now
        assert watch.take_reset() is None
        assert watch.observe("b") is TopicChange.RECREATED
    assert watch.missing() is None
    assert watch.take_reset() is None  # the positions went with the deletion
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in said] == ["ERROR", "WARNING"]
    assert "'in' does not exist (deleted?)" in said[0][1]
    assert said[1][1].endswith(
        "created again (its id is now b): its partitions are read from their start"
    )


def test_created_again_between_two_looks_asks_to_start_over() -> None:
    watch = InputTopicWatch("in")
    watch.observe("a")
    assert watch.observe("b") is TopicChange.RECREATED
    assert watch.take_reset() is TopicChange.RECREATED and watch.take_reset() is None


def test_deleted_and_back_before_the_reset_was_taken_starts_over() -> None:
    watch = InputTopicWatch("in")
    watch.observe("a")
    watch.observe(None)
    watch.observe("b")  # the loop never dropped the old positions
    assert watch.take_reset() is TopicChange.RECREATED


def test_missing_from_the_first_look_then_created_needs_no_reset() -> None:
    watch = InputTopicWatch("in")
    assert watch.observe(None) is TopicChange.DELETED
    assert watch.take_reset() is TopicChange.DELETED  # harmless: nothing was read yet
    assert watch.observe("a") is TopicChange.RECREATED and watch.take_reset() is None


def test_readyz_is_not_ready_while_the_input_topic_is_missing() -> None:
    health = Health(30.0)
    watch = InputTopicWatch("in")
    health.input_missing = watch.missing
    health.set_phase("running")
    health.assigned(2)
    watch.observe("a")
    assert health.readiness().ok
    watch.observe(None)
    verdict = health.readiness()
    assert not verdict.ok
    assert verdict.body["checks"]["input_topic"] == "the input topic 'in' does not exist"
    assert "does not exist" in verdict.body["reason"]
    watch.observe("b")
    assert health.readiness().ok


SETTINGS = settings_from_dict(
    {
        "kafka": {"group_id": "g"},
        "topics": {"input": "in", "output": "out"},
        "models": [{"name": "a"}],
        "strategy": {"name": "soft_vote"},
    },
    environ={},
)


def recreated_run(
    pipeline: Pipeline,  # noqa: F811
    watched: bool,
    n_new: int,
    deletion_seen: bool = False,
) -> tuple[Log, Metrics]:
    """40 events per partition read and committed; then the topic is deleted and created again
    with its two partitions and ``n_new`` new events each, in one go (``deletion_seen``: 20 polls
    apart, so the watch sees it missing); the loop runs until the new events are committed (or
    for a bounded number of polls). ``watched``: the lag monitor, every third turn between
    batches, gives the topic's id to an :class:`InputTopicWatch` and the loop resets on it."""
    log = filled(40)
    metrics = Metrics(CollectorRegistry())
    metrics.initialise(input_topic="in", models=["a"], strategies=["soft_vote"])
    watch = InputTopicWatch("in") if watched else None
    admin = FakeAdmin(log)
    lag = LagMonitor(SETTINGS, metrics, lambda: admin, topic=watch)
    phase = {"deleted_at": 0, "recreated": False, "turns": 0}
    tps = [TopicPartition("in", p) for p in (0, 1)]

    def poll(polled: FakeSource) -> None:
        n = sum(m.n_polls for m in members)
        assert n < 400 or not watched, "the new topic's events were never read"
        if not phase["deleted_at"] and all(log.committed.get(tp) == 40 for tp in tps):
            log.delete()
            phase["deleted_at"] = n
        if phase["deleted_at"] and not phase["recreated"]:
            if not deletion_seen or n >= phase["deleted_at"] + 20:
                log.create(2)
                for p in (0, 1):
                    log.append(p, values(n_new, f"new{p}-"))
                phase["recreated"] = True
        elif phase["recreated"] and (all(log.committed.get(tp) == n_new for tp in tps) or n >= 400):
            loop.stop()

    members: list[FakeSource] = []

    def make() -> FakeSource:
        source = FakeSource(log)
        source.on_poll = poll
        members.append(source)
        return source

    source = RenewableSource(make)
    dog = Watchdog(60.0)

    def between() -> None:
        phase["turns"] += 1
        if phase["turns"] % 3 == 0:
            lag.refresh()
        tend(source, dog, loop, metrics, topic=watch)

    loop = make_loop(pipeline, source, FakeSink(log), max_events=8, between_batches=between)
    loop.run()
    return log, metrics


def sample(metrics: Metrics, name: str, **labels: Any) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def new_ids(n_new: int) -> set[str]:
    return {f"new{p}-{i}" for p in (0, 1) for i in range(n_new)}


@pytest.mark.parametrize("n_new", [30, 60], ids=["fewer records", "more records"])
def test_created_again_between_two_looks_the_new_topic_is_read_whole(
    pipeline: Pipeline,  # noqa: F811
    n_new: int,
) -> None:
    log, metrics = recreated_run(pipeline, watched=True, n_new=n_new)
    ids = published_ids(log)
    assert new_ids(n_new) <= set(ids), f"not read: {sorted(new_ids(n_new) - set(ids))[:5]}"
    assert sample(metrics, "streamfuse_consumer_resets_total", reason="topic_recreated") == 1
    assert sample(metrics, "streamfuse_consumer_resets_total", reason="topic_deleted") == 0
    assert sample(metrics, "streamfuse_input_topic_exists") == 1


def test_seen_deleted_the_new_topic_is_read_from_its_start_once(
    pipeline: Pipeline,  # noqa: F811
) -> None:
    log, metrics = recreated_run(pipeline, watched=True, n_new=60, deletion_seen=True)
    ids = published_ids(log)
    assert {i: ids[i] for i in new_ids(60)} == dict.fromkeys(new_ids(60), 1)  # each once
    assert sample(metrics, "streamfuse_consumer_resets_total", reason="topic_deleted") == 1
    assert sample(metrics, "streamfuse_consumer_resets_total", reason="topic_recreated") == 0


@pytest.mark.parametrize("n_new", [30, 60], ids=["fewer records", "more records"])
def test_unwatched_the_old_positions_skip_the_new_topics_records(
    pipeline: Pipeline,  # noqa: F811
    n_new: int,
) -> None:
    """What the watch is for: without it the old positions (40) skip the new topic's first 40
    records of each partition: all of them when it has 30."""
    log, _ = recreated_run(pipeline, watched=False, n_new=n_new)
    read = {i for i in published_ids(log) if i.startswith("new")}
    assert read == {f"new{p}-{i}" for p in (0, 1) for i in range(40, n_new)}
