"""The transport's Source against the real broker, for each library: a poll returns the
records already there instead of waiting out its timeout (confluent-kafka's ``consume(n,
timeout)`` waits for all ``n``: a lightly loaded worker held each event up to its 200 ms idle
poll before the batch began)."""

from __future__ import annotations

import time

import pytest

from tests.support.kafka import Broker, wait_for
from tests.support.worker import produce
from worker.config import settings_from_dict
from worker.transport import Polled, open_transport

pytestmark = pytest.mark.kafka

TIMEOUT_S = 30.0  # the poll's timeout: far longer than the broker takes to hand a record over


def test_a_poll_returns_the_records_there_without_waiting_out_its_timeout(
    kafka: Broker, topics, group_factory, library: str
) -> None:
    t = topics(partitions=1)
    settings = settings_from_dict(
        {
            "kafka": {"bootstrap_servers": kafka.bootstrap, "group_id": group_factory("poll")},
            "topics": {"input": t.input, "output": t.output},
            "models": [{"name": "m"}],
            "strategy": {"name": "soft_vote"},
        }
    )
    source = open_transport(settings).source()
    try:
        empty: list[Polled] = []
        wait_for(
            lambda: empty.append(source.poll(0.1, 512)) or bool(source.assignment()),
            timeout=60,
            what="the partition assigned",
        )
        assert all(not p.records for p in empty)
        produce(kafka.bootstrap, t.input, [b'{"id": "a"}', b'{"id": "b"}', b'{"id": "c"}'])
        polled: list[bytes | None] = []
        started = time.monotonic()
        while len(polled) < 3 and time.monotonic() - started < TIMEOUT_S:
            polled += [r.value for r in source.poll(TIMEOUT_S, 512).records]
        took = time.monotonic() - started
    finally:
        source.close()
    assert polled == [b'{"id": "a"}', b'{"id": "b"}', b'{"id": "c"}']
    assert took < TIMEOUT_S, f"the polls waited out their {TIMEOUT_S:.0f} s timeout"
