"""A Kafka call that never returns, inside a worker on the real broker, for each library and
each guarantee: the producer's flush (``at_least_once``) or ``send_offsets_to_transaction()``
(``exactly_once``, as librdkafka leaves it while the group coordinator is unreachable,
librdkafka #5456) hangs once. It is named within its deadline (a WARNING, the counter,
``/healthz``'s reason while it lasts), the producer replaced, and every event still published:
exactly once under ``exactly_once`` read with ``read_committed``."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from tests.support.kafka import wait_for
from tests.support.worker import events, produce
from worker.config import load_settings
from worker.service.worker import Worker

pytestmark = pytest.mark.kafka

WATCHDOG_S = 3.0


class HangOnce:
    """The producer, except that the first ``call`` blocks until ``gate`` is set."""

    def __init__(self, client: Any, call: str, gate: threading.Event) -> None:
        self._client, self._call, self._gate = client, call, gate
        self.hung = False

    def __getattr__(self, name: str) -> Any:
        if name == self._call and not self.hung:
            self.hung = True
            return lambda *args, **kwargs: self._gate.wait()
        return getattr(self._client, name)


@pytest.mark.parametrize(
    ("guarantee", "call"),
    [("at_least_once", "flush"), ("exactly_once", "send_offsets_to_transaction")],
)
def test_a_call_that_never_returns_is_named_and_its_producer_replaced(
    scenario,
    library: str,
    guarantee: str,
    call: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = scenario(partitions=2, group="stuck")
    t = s.topics
    n = 2_000
    ids, values = events(np.resize(s.rows, (n, s.rows.shape[1])), "s")
    produce(s.kafka.bootstrap, t.input, values, [i.encode() for i in ids])
    config = s.config(kafka={"processing_guarantee": guarantee, "watchdog_s": WATCHDOG_S})
    registry = CollectorRegistry()
    worker = Worker(load_settings(config), registry)
    worker.connect()
    sink: Any = worker.sink
    gate = threading.Event()
    hanging = sink.producer = HangOnce(sink.producer, call, gate)
    thread = threading.Thread(target=worker.run, name="worker", daemon=True)

    def stuck() -> float:
        value = registry.get_sample_value("streamfuse_kafka_call_stuck_total", {"call": call})
        return value or 0.0

    reasons: list[str] = []
    try:
        with caplog.at_level(logging.WARNING, logger="streamfuse.delivery"):
            thread.start()
            wait_for(lambda: stuck() == 1, timeout=60, what=f"{call}() counted as stuck")
            reasons.append(worker.health.liveness().body["reason"])
            isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
            out = s.kafka.consume_all(t.output, n, timeout=120, isolation_level=isolation, idle_s=1)
    finally:
        worker.stop()
        thread.join(30)
        gate.set()
    seen = Counter(orjson.loads(r.value)["id"] for r in out)
    print(
        f"{library} {guarantee}: {call}() stuck once; {len(seen)} of {n} published,"
        f" {sum(seen.values()) - len(seen)} duplicates"
    )
    assert hanging.hung and sink.producer is not hanging  # replaced
    assert stuck() == 1
    assert f"{call}()" in reasons[0] and "stuck" in reasons[0]
    assert any(f"{call}()" in r.getMessage() for r in caplog.records)
    assert set(seen) == set(ids)
    if guarantee == "exactly_once":
        assert max(seen.values()) == 1
    assert not thread.is_alive()
