"""The membership watchdog's actions on a worker serving a stream, on the real broker, for each
library (issue 22): the watchdog's step (a soft reset, or a new consumer) is forced once
mid-stream (a real wedge takes a session timeout to show), and the worker leaves the group,
joins again, and publishes every event (``at_least_once``: what was in flight is re-read from
the committed offsets). And kafka-python's polls while not stable wait for the join."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests.support.kafka import Broker, wait_for
from tests.support.worker import events, produce
from worker.config import load_settings, settings_from_dict
from worker.service.watchdog import Action, Wedge
from worker.service.worker import Worker
from worker.transport import GroupState, open_transport

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("action", [Action.SOFT_RESET, Action.REBUILD], ids=lambda a: a.name)
def test_a_reset_on_a_serving_worker_loses_nothing(
    action: Action, scenario: Any, library: str
) -> None:
    s = scenario(partitions=2, group="reset")
    t = s.topics
    n = 2_000
    ids, values = events(np.resize(s.rows, (n, s.rows.shape[1])), "r")
    keys = [i.encode() for i in ids]
    produce(s.kafka.bootstrap, t.input, values[: n // 2], keys[: n // 2])
    config = s.config(kafka={"processing_guarantee": "at_least_once"})
    registry = CollectorRegistry()
    worker = Worker(load_settings(config), registry)
    worker.connect()
    check = worker.watchdog.check
    forced = threading.Event()
    reset_at: list[float] = []  # the events published when the reset was taken

    def check_once() -> tuple[Action, Wedge] | None:
        if forced.is_set() and not reset_at:
            reset_at.append(published())
            return action, Wedge("rebalancing", "forced by the test")
        return check()

    worker.watchdog.check = check_once  # type: ignore[method-assign]

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return registry.get_sample_value(name, labels or {}) or 0.0

    def published() -> float:
        return sample("streamfuse_events_published_total")

    thread = threading.Thread(target=worker.run, name="worker", daemon=True)
    try:
        thread.start()
        wait_for(lambda: published() >= 200, timeout=30, what="the worker serving")
        forced.set()  # taken on the loop's thread at its next turn
        wait_for(lambda: bool(reset_at), timeout=10, what="the reset")
        produce(s.kafka.bootstrap, t.input, values[n // 2 :], keys[n // 2 :])
        out = s.kafka.consume_all(t.output, n, timeout=30, idle_s=1)
        wait_for(
            lambda: sample("streamfuse_group_state", {"state": "stable"}) == 1,
            timeout=10,
            what="stable again",
        )
    finally:
        worker.stop()
        thread.join(30)
    seen = Counter(orjson.loads(r.value)["id"] for r in out)
    rejoin_s = sample("streamfuse_rebalance_duration_seconds_sum")
    print(
        f"{library}: {action.value} after {reset_at[0]:.0f} published; {len(seen)} of {n} ids,"
        f" {sum(seen.values()) - len(seen)} re-read; rejoin took {rejoin_s:.2f} s"
    )
    assert set(seen) == set(ids)  # nothing lost
    assert sample("streamfuse_consumer_resets_total", {"reason": "rebalancing"}) == 1
    assert sample("streamfuse_rebalance_duration_seconds_count") == 1
    assert worker.source is not None
    assert worker.source.n_renewed == (1 if action is Action.REBUILD else 0)
    assert not thread.is_alive()


def test_kafka_python_polls_with_0_wait_for_the_join_while_not_stable(
    kafka: Broker, topic_factory: Any, group_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop polls with 0 while a batch is in flight. The library's own rejoin (the repair
    of .rejoin taken away, as on a version it does not recognise) then sends a new JoinGroup
    at each poll instead of taking the answer: 31 to 194 polls of 0 between 5 ms sleeps, 0.2
    to 1.1 s, in 8 runs. With the floor, every poll while not stable waits REJOIN_POLL_S for
    the answer (one poll in 0.11 s on a quiet machine; 5 were seen on a busy one, so the count
    is not asserted: how long the coordinator takes to answer is not the worker's), and the
    member rejoins."""
    from kafka import KafkaConsumer

    from worker.transport.kafka_python import rejoin
    from worker.transport.kafka_python.source import REJOIN_POLL_S

    settings = settings_from_dict(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap, "group_id": group_factory("floor")},
            "topics": {"input": topic_factory("floor", partitions=2)},
            "models": [{"name": "m"}],
            "strategy": {"name": "soft_vote"},
        },
        environ={},
    )
    waits_ms: list[int] = []  # what each poll of the library was given, from the reset on
    library_poll = KafkaConsumer.poll

    def poll(self: Any, timeout_ms: int = 0, **kwargs: Any) -> Any:
        waits_ms.append(timeout_ms)
        return library_poll(self, timeout_ms=timeout_ms, **kwargs)

    source = open_transport(settings, "kafka-python").source()
    try:
        wait_for(
            lambda: (
                not source.poll(0.2, 10).records and source.membership().state is GroupState.STABLE
            ),
            timeout=60,
            what="stable",
        )
        rejoin.uninstall()
        source.reset()
        monkeypatch.setattr(KafkaConsumer, "poll", poll)
        n_polls = 0
        while source.membership().state is not GroupState.STABLE:
            assert n_polls < 1000, "never rejoined"
            source.poll(0.0, 10)
            n_polls += 1
            time.sleep(0.005)
        source.poll(0.0, 10)  # stable: a poll of 0 stays one
    finally:
        monkeypatch.undo()
        rejoin.install()
        source.close()
    assert n_polls >= 1  # the reset left the member unstable
    assert waits_ms == [int(REJOIN_POLL_S * 1000)] * n_polls + [0]
