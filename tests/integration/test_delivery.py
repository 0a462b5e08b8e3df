"""Delivery with two batches in the air, against the real broker: a failed send while the next
batch is in flight loses nothing, and with ``exactly_once`` a refused transaction is aborted and
its events, and those of the batch in flight, are published exactly once."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import numpy as np
import orjson
import pytest
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from tests.support.worker import events, produce
from worker.config import load_settings
from worker.service.worker import Worker

pytestmark = pytest.mark.kafka


def _ids(records: list[Any]) -> Counter[str]:
    return Counter(orjson.loads(r.value)["id"] for r in records)


def _run(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, name="worker", daemon=True)
    thread.start()
    return thread


def test_a_failed_send_with_the_next_batch_in_flight_loses_nothing(scenario) -> None:
    # One partition, filled before the worker starts: batch 2 is polled and its models started
    # before batch 1 is sent, so the failed batch 1 and the in-flight batch 2 share a partition.
    s = scenario(partitions=1, group="failsend")
    t = s.topics
    n = 2_000
    ids, values = events(np.resize(s.rows, (n, s.rows.shape[1])), "s")
    produce(s.kafka.bootstrap, t.input, values)
    config = s.config()
    worker = Worker(load_settings(config), CollectorRegistry())
    worker.connect()
    assert worker.sink is not None and worker.loop is not None
    producer = worker.sink.producer  # the kafka-python client behind the transport's sink
    real_send = producer.send
    # The first send made while the next batch's models run fails. Not simply the first send:
    # on a loaded machine the first batch can be sent before the second was fetched.
    calls: dict[str, int | None] = {"sends": 0, "failed_at": None}

    def failing_once(*args: Any, **kwargs: Any) -> Any:
        assert worker.loop is not None
        calls["sends"] = (calls["sends"] or 0) + 1
        if calls["failed_at"] is None and worker.loop.running is not None:
            calls["failed_at"] = calls["sends"]
            raise KafkaError("injected: the broker refused the batch")
        return real_send(*args, **kwargs)

    producer.send = failing_once  # type: ignore[method-assign]
    thread = _run(worker)
    try:
        out = s.kafka.consume_all(t.output, n, timeout=120, idle_s=1.0)
    finally:
        worker.stop()
        thread.join(30)
    seen = _ids(out)
    print(
        f"{len(out)} predictions, {len(seen)} distinct of {n}; "
        f"the send that failed with the next batch in flight: {calls['failed_at']}"
    )
    assert calls["failed_at"] is not None, "no batch was sent while the next one ran"
    assert set(seen) == set(ids)
    assert not thread.is_alive()


def test_exactly_once_an_aborted_transaction_is_redone_once(scenario) -> None:
    s = scenario(partitions=2, group="txn")
    t = s.topics
    n = 4_000
    ids, values = events(np.resize(s.rows, (n, s.rows.shape[1])), "x")
    produce(s.kafka.bootstrap, t.input, values, [i.encode() for i in ids])
    config = s.config(kafka={"processing_guarantee": "exactly_once"})
    registry = CollectorRegistry()
    worker = Worker(load_settings(config), registry)
    worker.connect()
    assert worker.sink is not None
    producer = worker.sink.producer
    real_send_offsets = producer.send_offsets_to_transaction
    refused: list[dict[Any, Any]] = []

    def failing_once(offsets: Any, metadata: Any) -> Any:
        if not refused:
            refused.append(dict(offsets))
            raise KafkaError("injected: the coordinator refused the offsets")
        return real_send_offsets(offsets, metadata)

    producer.send_offsets_to_transaction = failing_once  # type: ignore[method-assign]
    thread = _run(worker)
    try:
        out = s.kafka.consume_all(
            t.output, n, timeout=120, isolation_level="read_committed", idle_s=1.0
        )
    finally:
        worker.stop()
        thread.join(30)
    seen = _ids(out)
    committed = registry.get_sample_value("streamfuse_transactions_committed_total") or 0
    aborted = registry.get_sample_value("streamfuse_transactions_aborted_total") or 0
    batches = registry.get_sample_value("streamfuse_batch_size_count") or 0
    print(
        f"{len(out)} committed predictions, {len(seen)} distinct of {n}; "
        f"{batches:.0f} batches in {committed:.0f} transactions, {aborted:.0f} aborted "
        f"(its offsets {sorted(o.offset for o in refused[0].values())})"
    )
    assert set(seen) == set(ids) and max(seen.values()) == 1
    assert aborted == 1 and refused
    assert committed == batches  # one transaction per published batch
    assert not thread.is_alive()
