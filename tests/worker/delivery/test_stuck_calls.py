"""A Kafka call that never returns (librdkafka's send_offsets_to_transaction() while the group
coordinator is unreachable, #5456) is noticed within its deadline, named in a WARNING, counted
in ``streamfuse_kafka_call_stuck_total{call}`` and in ``/healthz``'s reason while it lasts; its
client is replaced and the batch re-read, for both guarantees. On the in-memory transport, whose
hung calls run under the adapters' own :class:`~worker.transport.deadline.CallGuard`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fake_transport import FakeSink, FakeSource
from tests.worker.service.test_loop import (  # noqa: F401  (pipeline and serving are fixtures)
    Clock,
    all_committed,
    filled,
    make_loop,
    never_ahead_of_publishing,
    pipeline,
    published_ids,
    run_until,
    serving,
)
from worker.delivery import Outcome
from worker.errors import KafkaCallStuckError, TransportError
from worker.inference.pipeline import Pipeline
from worker.service.health import Health
from worker.transport.deadline import CallGuard, bounded, stuck_calls, wait_unstuck

DEADLINE_S = 0.2  # the fake's (tests/support/fake_transport.py)


def stuck_count(loop: Any, call: str) -> float:
    value = loop.delivery.metrics.registry.get_sample_value(
        "streamfuse_kafka_call_stuck_total", {"call": call}
    )
    return value or 0.0


@pytest.fixture
def released() -> Iterator[list[Any]]:
    """Fakes whose hung calls are let go at the end (the registry of stuck calls empties)."""
    fakes: list[Any] = []
    yield fakes
    for fake in fakes:
        fake.hangs.release()
    wait_until_none_stuck()


def wait_until_none_stuck() -> None:
    """Released calls return at once: the registry empties."""
    assert wait_unstuck(5.0), stuck_calls()


# -- the helper ----------------------------------------------------------------------------------


def test_a_guarded_call_returns_its_value_or_its_error_or_is_named_when_stuck() -> None:
    guard = CallGuard("producer")
    assert guard.run(lambda: 42, "flush", 1.0) == 42
    with pytest.raises(ZeroDivisionError):
        guard.run(lambda: 1 / 0, "flush", 1.0)
    gate = threading.Event()
    began = time.monotonic()
    with pytest.raises(KafkaCallStuckError) as stuck:
        guard.run(gate.wait, "send_offsets_to_transaction", DEADLINE_S)
    waited = time.monotonic() - began
    assert DEADLINE_S <= waited < DEADLINE_S + 0.5
    assert stuck.value.call == "send_offsets_to_transaction"
    assert "send_offsets_to_transaction()" in str(stuck.value)
    assert [name for name, _ in stuck_calls()] == ["producer.send_offsets_to_transaction"]
    # the thread stays in the stuck call; the next call runs on a new one
    assert guard.run(lambda: "next", "flush", 1.0) == "next"
    once = threading.Event()
    with pytest.raises(KafkaCallStuckError, match="metadata"):
        bounded(once.wait, "metadata", 0.05)  # a call made once, on a thread of its own
    assert len(stuck_calls()) == 2
    gate.set()
    once.set()
    wait_until_none_stuck()
    guard.close()


# -- at_least_once -------------------------------------------------------------------------------


def test_at_least_once_a_flush_that_never_returns_replaces_the_producer(
    pipeline: Pipeline,  # noqa: F811
    released: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = filled(40)
    source = FakeSource(log, on_commit=never_ahead_of_publishing(log))
    sink = FakeSink(log)
    released.append(sink)
    sink.hangs.next["flush"] = 1
    failures: list[Outcome] = []
    loop = make_loop(pipeline, source, sink, max_events=8, failed=failures.append)
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="streamfuse.delivery"):
        run_until(loop, source, all_committed(log, 40))
    assert time.monotonic() - began < DEADLINE_S + 5
    assert sink.hangs.hung == ["flush"] and sink.n_replaced == 1 and sink.fenced == [1]
    assert failures == [Outcome.RETRY_FROM_FIRST]  # the batch re-read
    ids = published_ids(log)
    assert set(ids) == {f"p{p}-{i}" for p in range(2) for i in range(40)}
    assert max(ids.values()) == 1  # the hung flush published nothing
    assert stuck_count(loop, "flush") == 1
    assert any("flush()" in r.getMessage() and "stuck" in r.getMessage() for r in caplog.records)


def test_at_least_once_a_commit_that_never_returns_is_named_and_counted(
    pipeline: Pipeline,  # noqa: F811
    released: list[Any],
) -> None:
    log = filled(8, partitions=1)
    source = FakeSource(log)
    sink = FakeSink(log)
    released.append(source)
    loop = make_loop(pipeline, source, sink, max_events=8)
    loop.run(max_batches=1)
    source.hangs.next["commit"] = 1
    began = time.monotonic()
    loop.delivery.commit_pending()  # as at a rebalance: waits for the answer, here in vain
    assert time.monotonic() - began < DEADLINE_S + 5  # the call never returns: not waited out
    assert source.hangs.hung == ["commit"] and stuck_count(loop, "commit") == 1


# -- exactly_once --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call", ["send_offsets_to_transaction", "commit_transaction", "abort_transaction"]
)
def test_exactly_once_a_transaction_call_that_never_returns_replaces_the_producer(
    pipeline: Pipeline,  # noqa: F811
    released: list[Any],
    caplog: pytest.LogCaptureFixture,
    call: str,
) -> None:
    log = filled(40)
    source = FakeSource(log)
    sink = FakeSink(log, source)
    released.append(sink)
    sink.hangs.next[call] = 1
    if call == "abort_transaction":
        real_send, sends = sink.send, []

        def send(topic: str, records: Any) -> None:  # the second batch's send fails: abort
            sends.append(topic)
            if len(sends) == 2:
                raise TransportError("injected: the local queue refused")
            real_send(topic, records)

        sink.send = send  # type: ignore[method-assign]
        loop = make_loop(pipeline, source, sink, True, max_events=8, clock=Clock(), interval_s=1.0)
    else:
        loop = make_loop(pipeline, source, sink, True, max_events=8)
    failures: list[Outcome] = []
    loop.failed = failures.append
    with caplog.at_level(logging.WARNING, logger="streamfuse.delivery"):
        run_until(loop, source, lambda: all_committed(log, 40)() or _drained(loop, log))
    assert sink.hangs.hung == [call] and sink.n_replaced == 1 and sink.fenced == [1]
    assert Outcome.RETRY_FROM_COMMITTED in failures
    ids = published_ids(log)
    assert set(ids) == {f"p{p}-{i}" for p in range(2) for i in range(40)}
    assert set(ids.values()) == {1}  # exactly once: the stuck transaction published nothing
    assert stuck_count(loop, call) == 1
    assert any(f"{call}()" in r.getMessage() for r in caplog.records)


def _drained(loop: Any, log: Any) -> bool:
    """With a spanning transaction, commit the open one once every event was read."""
    if all(loop.source.position[tp] == 40 for tp in loop.source.assigned):
        loop.delivery.commit_pending()
        return all_committed(log, 40)()
    return False


# -- /healthz ------------------------------------------------------------------------------------


def test_healthz_names_the_stuck_call_while_it_lasts(released: list[Any]) -> None:
    clock = Clock()
    health = Health(10.0, clock)
    health.set_phase("connecting")
    health.set_phase("running")
    assert "stuck" not in health.liveness().body["reason"]
    source = FakeSource(filled(1))
    released.append(source)
    source.hangs.next["commit"] = 1
    with pytest.raises(KafkaCallStuckError):
        source.commit({}, wait=True)
    live = health.liveness()
    assert live.ok  # the client is replaced and the loop goes on: restarting would not help
    assert "consumer.commit()" in live.body["reason"]
    assert list(live.body["stuck_calls"]) == ["consumer.commit"]
    source.hangs.release()
    wait_until_none_stuck()
    live = health.liveness()
    assert "stuck" not in live.body["reason"] and "stuck_calls" not in live.body
