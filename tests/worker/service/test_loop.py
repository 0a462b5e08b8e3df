"""The worker loop and both delivery guarantees on an in-memory transport.

A real pipeline (a store with two tiny models and a fitted ``soft_vote``) behind the real
:class:`~worker.service.loop.Loop` and the real :class:`~worker.delivery.AtLeastOnce` /
:class:`~worker.delivery.ExactlyOnce`; only Kafka is replaced (tests/support/fake_transport.py).
The same paths run against the real broker in tests/integration/test_delivery.py and the fault
suite.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests.support.fake_transport import FakeSink, FakeSource, Log
from tests.support.serving import two_model_serving
from worker.config import BatchSettings, ModelErrorPolicy, TopicsSettings
from worker.delivery import AtLeastOnce, Backoff, ExactlyOnce, Outcome
from worker.errors import ProducerFencedError, ProducerStuckError, TransportError
from worker.inference.pipeline import Pipeline
from worker.inference.serving import Serving
from worker.metrics import Metrics
from worker.service.health import Heartbeat
from worker.service.loop import Interrupted, Loop
from worker.transport import TopicPartition

TOPICS = TopicsSettings(input="in", output="out", dead_letter="dlq", labels=None)
MAX_POLLS = 20_000


@pytest.fixture(scope="module")
def serving(tmp_path_factory: pytest.TempPathFactory) -> Serving:
    return two_model_serving(tmp_path_factory.mktemp("loop") / "store")


@pytest.fixture
def pipeline(serving: Serving) -> Any:
    p = Pipeline(serving, ModelErrorPolicy(), max_event_bytes=1 << 16)
    yield p
    p.close()


def values(n: int, prefix: str, bad: set[int] = frozenset()) -> list[bytes]:  # type: ignore[assignment]
    gen = np.random.default_rng(1)
    return [
        b"not json" if i in bad else orjson.dumps({"id": f"{prefix}{i}", "features": row.tolist()})
        for i, row in enumerate(gen.normal(size=(n, 3)))
    ]


def filled(n_per_partition: int, partitions: int = 2, bad: set[int] = frozenset()) -> Log:  # type: ignore[assignment]
    log = Log("in")
    for p in range(partitions):
        log.append(p, values(n_per_partition, f"p{p}-", bad))
    return log


def published_ids(log: Log) -> Counter[str]:
    return Counter(orjson.loads(r.value)["id"] for r in log.published.get("out", []))


def sources(log: Log) -> set[tuple[int, int]]:
    """(partition, offset) of every published prediction and dead letter."""
    out = set()
    for topic in ("out", "dlq"):
        for r in log.published.get(topic, []):
            _, partition, offset = dict(r.headers)["streamfuse.source"].decode().split(":")
            out.add((int(partition), int(offset)))
    return out


def never_ahead_of_publishing(log: Log) -> Callable[[dict[TopicPartition, int]], None]:
    """A commit check: every offset below a committed offset was published first."""

    def check(offsets: dict[TopicPartition, int]) -> None:
        done = sources(log)
        for tp, offset in offsets.items():
            missing = [o for o in range(offset) if (tp.partition, o) not in done]
            assert not missing, f"committing {tp}@{offset} before publishing offsets {missing}"

    return check


def make_loop(
    pipeline: Pipeline,
    source: FakeSource,
    sink: FakeSink,
    exactly_once: bool = False,
    max_events: int = 16,
    transaction_timeout_s: float = float("inf"),
    clock: Callable[[], float] = time.monotonic,
    interval_s: float = 0.0,
    **callbacks: Any,
) -> Loop:
    backoff = Backoff()
    backoff.wait = lambda seconds=None: None  # type: ignore[method-assign]  # no waiting here
    metrics = Metrics(CollectorRegistry())
    if exactly_once:
        delivery: Any = ExactlyOnce(
            source, sink, TOPICS, 5.0, metrics, backoff, transaction_timeout_s, clock, interval_s
        )
    else:
        delivery = AtLeastOnce(source, sink, TOPICS, 5.0, metrics, backoff)
    batch = BatchSettings(max_events=max_events, max_wait_ms=0)
    return Loop(batch, pipeline, source, delivery, backoff, **callbacks)


def run_until(loop: Loop, source: FakeSource, done: Callable[[], bool]) -> None:
    """Run the loop until ``done()`` holds at a poll (then stop it: it drains and returns)."""

    def check(src: FakeSource) -> None:
        assert src.n_polls < MAX_POLLS, "the loop made no progress"
        if done():
            loop.stop()

    source.on_poll = check
    loop.run()


def all_committed(log: Log, n_per_partition: int, partitions: int = 2) -> Callable[[], bool]:
    return lambda: all(
        log.committed.get(TopicPartition("in", p), 0) == n_per_partition for p in range(partitions)
    )


# -- at_least_once -------------------------------------------------------------------------------


def test_every_event_is_published_once_and_committed(pipeline: Pipeline) -> None:
    log = filled(50, bad={7})
    source = FakeSource(log, on_commit=never_ahead_of_publishing(log))
    sink = FakeSink(log)
    loop = make_loop(pipeline, source, sink)
    run_until(loop, source, all_committed(log, 50))
    ids = published_ids(log)
    assert len(ids) == 98 and set(ids.values()) == {1}
    assert len(log.published["dlq"]) == 2  # offset 7 of each partition: not JSON
    assert loop.n_delivered >= 100 // 16
    assert loop.running is None and loop.ready is None


class FixedSizer:
    """A :class:`~worker.batch.sizing.BatchSizer` whose cap is fixed, recording what it is told."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.observed: list[tuple[int, float]] = []

    def limit(self) -> int:
        return self.cap

    def wait_s(self) -> float:
        return 0.0

    def observe(self, n_events: int, seconds: float) -> None:
        self.observed.append((n_events, seconds))


def test_batches_keep_to_the_sizers_cap_and_tell_it_their_time(pipeline: Pipeline) -> None:
    log = filled(40)
    source = FakeSource(log, on_commit=never_ahead_of_publishing(log))
    sizes: list[int] = []
    loop = make_loop(
        pipeline, source, FakeSink(log), delivered=lambda b, r: sizes.append(b.n_records)
    )
    sizer = loop.sizer = FixedSizer(5)  # type: ignore[assignment]
    run_until(loop, source, all_committed(log, 40))
    assert sum(sizes) == 80 and max(sizes) == 5  # max_events is 16
    assert [n for n, _ in sizer.observed] == sizes  # every batch timed, in order
    assert all(seconds > 0 for _, seconds in sizer.observed)
    assert set(published_ids(log).values()) == {1}


def test_a_failed_flush_rewinds_every_unpublished_batch(pipeline: Pipeline) -> None:
    log = filled(40)
    source = FakeSource(log, on_commit=never_ahead_of_publishing(log))
    sink = FakeSink(log)
    sink.fail_next_flushes = 2
    failures: list[Outcome] = []
    loop = make_loop(pipeline, source, sink, max_events=8, failed=failures.append)
    run_until(loop, source, all_committed(log, 40))
    ids = published_ids(log)
    assert set(ids) == {f"p{p}-{i}" for p in range(2) for i in range(40)}
    assert max(ids.values()) == 1  # the failed batches were never published, then once
    assert failures == [Outcome.RETRY_FROM_FIRST] * 2  # each reported (the metric's source)


def test_a_producer_failing_batches_in_a_row_is_replaced(pipeline: Pipeline) -> None:
    """A producer whose flushes keep failing (librdkafka after a broker restart can stay that
    way) is replaced after FAILURES_BEFORE_REPLACING failures in a row; nothing is lost."""
    from worker.delivery.at_least_once import FAILURES_BEFORE_REPLACING

    log = filled(40)
    source = FakeSource(log, on_commit=never_ahead_of_publishing(log))
    sink = FakeSink(log)
    sink.fail_next_flushes = FAILURES_BEFORE_REPLACING - 1  # then one success: no replacement
    loop = make_loop(pipeline, source, sink, max_events=8)
    run_until(loop, source, all_committed(log, 40))
    assert sink.n_replaced == 0
    log2 = filled(40)
    source2, sink2 = FakeSource(log2, on_commit=never_ahead_of_publishing(log2)), FakeSink(log2)
    sink2.fail_next_flushes = FAILURES_BEFORE_REPLACING
    run_until(make_loop(pipeline, source2, sink2, max_events=8), source2, all_committed(log2, 40))
    assert sink2.n_replaced == 1
    assert set(published_ids(log2)) == {f"p{p}-{i}" for p in range(2) for i in range(40)}


def test_a_refused_seek_rewinds_to_the_committed_offsets(pipeline: Pipeline) -> None:
    """A seek the client refuses (TransportError, e.g. racing a revoke) after a failed flush:
    the loop re-reads from the committed offsets instead of ending, and nothing is lost."""
    log = filled(40)
    source = FakeSource(log, on_commit=never_ahead_of_publishing(log))
    source.refuse_next["seek"] = 1
    sink = FakeSink(log)
    sink.fail_next_flushes = 1
    loop = make_loop(pipeline, source, sink, max_events=8)
    run_until(loop, source, all_committed(log, 40))
    assert source.refuse_next["seek"] == 0  # the refusal was met
    assert set(published_ids(log)) == {f"p{p}-{i}" for p in range(2) for i in range(40)}


def test_a_refused_async_commit_is_logged_and_a_later_commit_covers_it(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    log = filled(40)
    source = FakeSource(log, on_commit=never_ahead_of_publishing(log))
    source.refuse_next["commit"] = 1  # the client refuses the first batch's commit
    loop = make_loop(pipeline, source, FakeSink(log), max_events=8)
    with caplog.at_level(logging.WARNING, logger="streamfuse.delivery"):
        run_until(loop, source, all_committed(log, 40))
    assert set(published_ids(log).values()) == {1}
    assert any("the next commit covers it" in r.getMessage() for r in caplog.records)


def test_a_rebalance_drops_unsent_batches_and_follows_the_assignment(pipeline: Pipeline) -> None:
    log = filled(60)
    source = FakeSource(log, on_commit=never_ahead_of_publishing(log))
    followed: list[tuple[TopicPartition, ...]] = []
    loop = make_loop(pipeline, source, FakeSink(log), assigned=followed.append, max_events=8)
    state = {"rebalanced": False, "in_flight": 0}
    real_poll = source.poll

    def poll(timeout_s: float, max_records: int) -> Any:
        polled = real_poll(timeout_s, max_records)
        if not state["rebalanced"] and loop.running is not None and loop.n_delivered >= 2:
            # mid-stream: a batch's models running, the next batch being gathered
            state["rebalanced"] = True
            state["in_flight"] = loop.running.batch.n_records
            source.rebalance({TopicPartition("in", 1)})
        return polled

    source.poll = poll  # type: ignore[method-assign]
    run_until(loop, source, lambda: log.committed.get(TopicPartition("in", 1), 0) == 60)
    assert followed == [(TopicPartition("in", 1),)]
    assert state["in_flight"] > 0
    assert source.refused_commits == []  # nothing of a revoked partition was sent after it
    ids = published_ids(log)
    assert {f"p1-{i}" for i in range(60)} <= set(ids)  # everything of the kept partition
    assert max(ids.values()) == 1  # published once: what was unsent was dropped, not sent
    revoked_published = {i for i in ids if i.startswith("p0-")}
    committed_p0 = log.committed.get(TopicPartition("in", 0), 0)
    # what this worker published of the revoked partition is exactly what it committed there
    assert revoked_published == {f"p0-{i}" for i in range(committed_p0)}


def test_a_poll_that_raises_is_retried_and_loses_nothing(pipeline: Pipeline) -> None:
    log = filled(30)
    source = FakeSource(log)
    source.fail_next_polls = 3
    loop = make_loop(pipeline, source, FakeSink(log))
    run_until(loop, source, all_committed(log, 30))
    assert len(published_ids(log)) == 60


def test_stop_delivers_the_batch_in_flight(pipeline: Pipeline) -> None:
    log = filled(5, partitions=1)
    source = FakeSource(log)
    loop = make_loop(pipeline, source, FakeSink(log), max_events=100)
    # stop as soon as the first batch is gathered: it is started, then drained
    run_until(loop, source, lambda: source.position[TopicPartition("in", 0)] == 5)
    assert len(published_ids(log)) == 5
    assert log.committed == {TopicPartition("in", 0): 5}


def test_the_stop_event_ends_the_loop_and_cuts_a_backoff_short(pipeline: Pipeline) -> None:
    """The process's stop signal is an event of its own: the loop and its backoff obey it."""
    log = filled(5, partitions=1)
    source = FakeSource(log)
    stop = threading.Event()
    backoff = Backoff(stop)
    delivery = AtLeastOnce(source, FakeSink(log), TOPICS, 5.0, backoff=backoff)
    batch = BatchSettings(max_events=100, max_wait_ms=0)
    loop = Loop(batch, pipeline, source, delivery, backoff, stop_event=stop)
    tp = TopicPartition("in", 0)

    def check(src: FakeSource) -> None:
        assert src.n_polls < MAX_POLLS, "the loop did not stop"
        if src.position[tp] == 5:
            stop.set()

    source.on_poll = check
    loop.run()  # set from outside the loop (a signal): the batch in flight is still delivered
    assert len(published_ids(log)) == 5 and log.committed == {tp: 5}
    began = time.monotonic()
    backoff.wait(5.0)
    assert time.monotonic() - began < 4.0  # cut short, not the 5 s (a loaded machine is slow)


def test_gather_says_why_it_returned_no_batch(pipeline: Pipeline) -> None:
    log = filled(3, partitions=1)
    source = FakeSource(log)
    loop = make_loop(pipeline, source, FakeSink(log))
    batch = loop.gather()
    assert not isinstance(batch, Interrupted) and batch.n_records == 3
    assert loop.gather() is Interrupted.NOTHING
    source.rebalance({TopicPartition("in", 0)})
    assert loop.gather() is Interrupted.REBALANCED
    loop.stop()
    assert loop.gather() is Interrupted.STOPPED


# -- exactly_once --------------------------------------------------------------------------------


def test_exactly_once_an_aborted_transaction_is_redone_from_committed(pipeline: Pipeline) -> None:
    log = filled(40)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    sink.abort_next_transactions = 2
    failures: list[Outcome] = []
    loop = make_loop(
        pipeline, source, sink, exactly_once=True, max_events=8, failed=failures.append
    )
    run_until(loop, source, all_committed(log, 40))
    ids = published_ids(log)
    assert len(ids) == 80 and set(ids.values()) == {1}
    assert sink.n_aborted == 2
    assert failures == [Outcome.RETRY_FROM_COMMITTED] * 2
    assert all(token is not None and token.epoch == 1 for token in sink.tokens)


def test_exactly_once_a_stuck_producer_is_replaced(pipeline: Pipeline) -> None:
    log = filled(20)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    sink.stick_next_transactions = 1
    loop = make_loop(pipeline, source, sink, exactly_once=True)
    run_until(loop, source, all_committed(log, 20))
    assert sink.n_replaced == 1
    assert set(published_ids(log).values()) == {1}


def test_exactly_once_a_producer_unusable_at_begin_is_replaced(pipeline: Pipeline) -> None:
    """A fatal error that is not a fence leaves the producer refusing every call, the next
    begin_transaction's included (tests/worker/transport/test_fatal_producer_errors.py): it is
    replaced and the batch read again, where re-reading alone would refuse forever."""
    log = filled(20)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    begin = sink.begin_transaction

    def unusable_until_replaced() -> None:
        if sink.n_replaced == 0:
            raise ProducerStuckError("injected: begin_transaction: fatal error")
        begin()

    sink.begin_transaction = unusable_until_replaced  # type: ignore[method-assign]
    loop = make_loop(pipeline, source, sink, exactly_once=True)
    run_until(loop, source, all_committed(log, 20))
    assert sink.n_replaced == 1
    assert set(published_ids(log).values()) == {1}


def test_exactly_once_never_vouches_with_an_unstable_or_changed_membership(
    pipeline: Pipeline,
) -> None:
    log = filled(10, partitions=1)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    loop = make_loop(pipeline, source, sink, exactly_once=True)
    source.stable = False
    assert loop.gather() is Interrupted.UNSTABLE  # read with no stable membership
    assert source.position[TopicPartition("in", 0)] == 0  # rewound
    source.stable = True
    real_poll = source.poll

    def poll_across_a_generation(timeout_s: float, max_records: int) -> Any:
        source.epoch += 1  # a new generation while the batch is read
        return real_poll(timeout_s, max_records)

    source.poll = poll_across_a_generation  # type: ignore[method-assign]
    assert loop.gather() is Interrupted.UNSTABLE
    source.poll = real_poll  # type: ignore[method-assign]
    run_until(loop, source, all_committed(log, 10, partitions=1))
    assert set(published_ids(log).values()) == {1}
    assert {token.epoch for token in sink.tokens if token is not None} == {source.epoch}


@pytest.mark.parametrize("open_s", [1, 20], ids=["younger", "older"])
def test_exactly_once_a_fence_ends_the_loop_unless_the_transaction_outlived_its_timeout(
    pipeline: Pipeline, open_s: int
) -> None:
    """Each transaction takes ``open_s`` of a 15 s timeout. A fence on a younger one comes from
    another instance: fatal. The coordinator itself aborts one older than its timeout (a broker
    outage outlasting it) and bumps the epoch: that fence replaces the producer."""
    log = filled(10, partitions=1)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    sink.fence_next_transactions = 1
    loop = make_loop(
        pipeline, source, sink, True, transaction_timeout_s=15.0, clock=count(0, open_s).__next__
    )
    if open_s < 15:
        with pytest.raises(ProducerFencedError):
            run_until(loop, source, lambda: False)
        assert "out" not in log.published and log.committed == {}
        assert sink.n_replaced == 0
    else:
        run_until(loop, source, all_committed(log, 10, partitions=1))
        assert sink.n_replaced == 1
        assert set(published_ids(log).values()) == {1}


def test_the_fake_is_not_vacuous(pipeline: Pipeline, tmp_path: Path) -> None:
    """The commit check fails a delivery that commits before it publishes."""
    log = filled(4, partitions=1)
    check = never_ahead_of_publishing(log)
    with pytest.raises(AssertionError, match="before publishing"):
        check({TopicPartition("in", 0): 4})


def test_the_loop_beats_its_heartbeat_and_reports_failed_polls_and_deliveries(
    pipeline: Pipeline,
) -> None:
    log = filled(20)
    source = FakeSource(log)
    sink = FakeSink(log)
    source.fail_next_polls = 1
    sink.fail_next_flushes = 1
    heartbeat = Heartbeat()
    reports: list[tuple[str | None, str | None]] = []
    loop = make_loop(pipeline, source, sink, max_events=8, heartbeat=heartbeat)
    real_flush = sink.flush

    def flush(timeout_s: float) -> None:
        reports.append((heartbeat.poll_error, heartbeat.delivery_error))
        real_flush(timeout_s)

    sink.flush = flush  # type: ignore[method-assign]
    run_until(loop, source, all_committed(log, 20))
    assert heartbeat.n_beats >= source.n_polls  # every poll is a beat
    assert heartbeat.poll_error is None and heartbeat.delivery_error is None  # cleared
    # the failed flush was reported before the next delivery, then cleared by it
    assert (None, Outcome.RETRY_FROM_FIRST.value) in reports
    assert reports[0] == (None, None)  # the failed poll was cleared by the next one


# -- exactly_once, one transaction spanning batches (kafka.transaction_interval_ms) --------------


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_transaction_spans_batches_until_it_is_due(pipeline: Pipeline) -> None:
    log = filled(40, partitions=1)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    clock = Clock()
    loop = make_loop(pipeline, source, sink, True, max_events=8, clock=clock, interval_s=1.0)
    loop.run(max_batches=3)  # batches sent into one open transaction, none committed
    n = loop.n_delivered
    assert n >= 3 and sink.n_begun == 1 and "out" not in log.published and log.committed == {}
    clock.now = 1.0  # due: the next turn commits them all together, before its first poll
    loop.run(max_batches=n + 1)
    # one commit of the n batches; the one delivered after it opened the next transaction
    assert len(sink.tokens) == 1 and sink.n_begun == 2
    assert log.committed == {TopicPartition("in", 0): 8 * n}
    assert len(published_ids(log)) == 8 * n


def test_a_refused_seek_aborts_the_open_transaction_before_reading_from_committed(
    pipeline: Pipeline,
) -> None:
    """A seek the client refuses falls back to the committed offsets (a batch read while the
    group rebalanced is re-read this way). The batches of the open transaction come after
    them and are read again: the transaction is aborted first, or they would be published twice
    when it commits."""
    log = filled(40, partitions=1)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    clock = Clock()
    loop = make_loop(pipeline, source, sink, True, max_events=8, clock=clock, interval_s=1.0)
    loop.run(max_batches=2)  # delivered into the open transaction, not committed
    n = loop.n_delivered
    assert sink.n_begun == 1 and log.committed == {}
    source.refuse_next["seek"] = 1
    loop.seek_or_rewind({TopicPartition("in", 0): 8 * n})  # re-read what came after them
    assert sink.n_aborted == 1 and source.position == {TopicPartition("in", 0): 0}
    done = all_committed(log, 40, partitions=1)

    def poll(src: FakeSource) -> None:
        clock.now += 0.25  # each transaction commits after a few polls
        assert src.n_polls < MAX_POLLS, "the loop made no progress"
        if done():
            loop.stop()

    source.on_poll = poll
    loop.run()
    ids = published_ids(log)
    assert len(ids) == 40 and set(ids.values()) == {1}


def test_a_due_transaction_commits_on_a_turn_without_a_batch(pipeline: Pipeline) -> None:
    log = filled(8, partitions=1)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    clock = Clock()
    loop = make_loop(pipeline, source, sink, True, max_events=8, clock=clock, interval_s=1.0)
    loop.run(max_batches=1)
    loop.drain()  # the one batch delivered into the open transaction
    assert log.committed == {} and loop.delivery.due_in() == 1.0
    clock.now = 2.0
    assert loop.gather() is Interrupted.NOTHING  # the turn found nothing to read, but committed
    assert log.committed == {TopicPartition("in", 0): 8} and set(published_ids(log).values()) == {1}


def test_an_open_transaction_commits_before_a_rebalance_revokes_partitions(
    pipeline: Pipeline,
) -> None:
    log = filled(60)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    loop = make_loop(pipeline, source, sink, True, max_events=8, clock=Clock(), interval_s=1.0)
    real_poll = source.poll
    seen = {"committed_before": -1}

    def poll(timeout_s: float, max_records: int) -> Any:
        polled = real_poll(timeout_s, max_records)
        if seen["committed_before"] < 0 and loop.n_delivered >= 3 and loop.running is not None:
            source.rebalance({TopicPartition("in", 1)})  # the clock never moves: never due
            seen["committed_before"] = len(sink.tokens)
        return polled

    source.poll = poll  # type: ignore[method-assign]
    run_until(loop, source, lambda: source.position[TopicPartition("in", 1)] == 60)
    loop.delivery.commit_pending()  # as the worker does at shutdown
    assert seen["committed_before"] == 1  # the revoke committed the open transaction
    ids = published_ids(log)
    assert max(ids.values()) == 1
    assert {f"p1-{i}" for i in range(60)} <= set(ids)
    revoked_published = {i for i in ids if i.startswith("p0-")}
    committed_p0 = log.committed.get(TopicPartition("in", 0), 0)
    assert committed_p0 > 0 and revoked_published == {f"p0-{i}" for i in range(committed_p0)}


def test_an_aborted_open_transaction_is_redone_from_committed(pipeline: Pipeline) -> None:
    log = filled(40)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    sink.abort_next_transactions = 2
    clock = Clock()
    # every delivery finds the transaction due after two batches: each commits two batches
    loop = make_loop(
        pipeline,
        source,
        sink,
        True,
        max_events=8,
        clock=lambda: clock.now,
        interval_s=1.0,
        delivered=lambda batch, result: setattr(clock, "now", clock.now + 0.5),
    )
    run_until(loop, source, all_committed(log, 40))
    ids = published_ids(log)
    assert len(ids) == 80 and set(ids.values()) == {1}
    assert sink.n_aborted == 2 and sink.n_begun > 2


def test_a_failed_send_aborts_the_open_transaction(pipeline: Pipeline) -> None:
    log = filled(24, partitions=1)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    loop = make_loop(pipeline, source, sink, True, max_events=8, clock=Clock(), interval_s=1.0)
    real_send, calls = sink.send, []

    def send(topic: str, records: Any) -> None:
        calls.append(topic)
        if len(calls) == 2:  # the second batch's: the first is in the open transaction
            raise TransportError("injected: the local queue refused")
        real_send(topic, records)

    sink.send = send  # type: ignore[method-assign]
    run_until(loop, source, lambda: source.position[TopicPartition("in", 0)] == 24)
    loop.delivery.commit_pending()
    assert sink.n_aborted == 1
    assert log.committed == {TopicPartition("in", 0): 24}
    assert set(published_ids(log).values()) == {1} and len(published_ids(log)) == 24
