"""The librdkafka (confluent-kafka) side of ``python -m benchmarks``: its ceiling loop.

The same pass-through work as the kafka-python ceiling (:func:`benchmarks.harness.run_ceiling`)
with the worker's librdkafka settings (:mod:`worker.transport.librdkafka.clients`): consume a
batch the way the worker does, produce one real-sized output per event with the worker's
header, flush and check every delivery report, commit. No decoding, no models.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from benchmarks.broker import Filled, wait_until
from worker.config import Settings
from worker.transport.librdkafka.clients import consumer_config, producer_config

__all__ = ["run_ceiling_librdkafka"]

PARTITIONS = 2


class _BenchError(RuntimeError):
    pass


def _consume_batch(consumer: Consumer, max_events: int, max_wait: float) -> list[Any]:
    """Up to ``max_events``, at most ``max_wait`` after the first message (as the worker)."""
    batch: list[Any] = []
    deadline = 0.0
    while len(batch) < max_events:
        timeout = max(0.0, deadline - time.monotonic()) if batch else 0.2
        got = consumer.consume(num_messages=max_events - len(batch), timeout=timeout)
        batch.extend(m for m in got if m.error() is None)
        if not batch:
            return []
        if not deadline:
            deadline = time.monotonic() + max_wait
        if time.monotonic() >= deadline:
            break
    return batch


def run_ceiling_librdkafka(
    settings: Settings, filled: Filled, value: bytes, timeout_s: float
) -> dict[str, float]:
    """Median ms per full batch of consume, produce, flush and commit (the events/s come from
    the outputs' CreateTime, as for every phase)."""
    producer = Producer(producer_config(settings))
    consumer = Consumer(consumer_config(settings))
    assigned: list[Any] = []
    consumer.subscribe([settings.topics.input], on_assign=lambda c, parts: assigned.extend(parts))
    output = settings.topics.output
    max_events, max_wait = settings.batch.max_events, settings.batch.max_wait_ms / 1000
    failed: list[str] = []

    def on_delivery(err: Any, message: Any) -> None:
        if err is not None:
            failed.append(err.str())

    def joined() -> bool:
        if consumer.consume(num_messages=1, timeout=0.2):
            raise _BenchError("the ceiling consumer read events before the gate opened")
        return len(assigned) == PARTITIONS

    laps: list[tuple[int, float, float, float, float]] = []
    done, n_total = 0, filled.n_events
    try:
        wait_until(joined, 60, "the librdkafka ceiling consumer's assignment")
        filled.open()
        deadline = time.monotonic() + timeout_s
        while done < n_total:
            if time.monotonic() > deadline:
                raise _BenchError(f"the librdkafka ceiling read {done} of {n_total} in time")
            t0 = time.perf_counter()
            batch = _consume_batch(consumer, max_events, max_wait)
            if not batch:
                continue
            t1 = time.perf_counter()
            last: dict[tuple[str, int], int] = {}
            for m in batch:
                topic, partition, offset = m.topic(), m.partition(), m.offset()
                header = f"{topic}:{partition}:{offset}".encode()
                producer.produce(
                    output,
                    value,
                    m.key(),
                    headers=[("streamfuse.source", header)],
                    on_delivery=on_delivery,
                )
                last[(topic, partition)] = offset
            t2 = time.perf_counter()
            if producer.flush(30) or failed:
                raise _BenchError(f"the librdkafka ceiling could not deliver ({failed[:1]})")
            t3 = time.perf_counter()
            consumer.commit(
                offsets=[KafkaTopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                asynchronous=False,
            )
            t4 = time.perf_counter()
            done += len(batch)
            laps.append((len(batch), t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    finally:
        consumer.close()
        producer.flush(10)
    full = [lap for lap in laps if lap[0] == max_events] or laps
    medians = np.median(np.asarray(full)[:, 1:], axis=0) * 1000
    return dict(zip(("poll", "send", "flush", "commit"), medians.tolist(), strict=True))


# -- the latency harness: a paced producer and a reader, both librdkafka ------------------------


def paced_produce(
    bootstrap: str, topic: str, ids: list[str], value: Any, rate: float
) -> np.ndarray:
    """Send ``value(i, ts)`` for every id at ``rate`` per second (each event stamped with its
    send time, ``ts``); the send times. librdkafka's ``produce`` costs a few µs, so the pacing
    holds at rates kafka-python's ``send`` (about 70 µs) cannot."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "acks": "all"})
    n = len(ids)
    sent_at = np.zeros(n)
    start = time.perf_counter()
    i = 0
    while i < n:
        due = min(n, int((time.perf_counter() - start) * rate) + 1)
        while i < due:
            sent_at[i] = ts = time.time()
            while True:
                try:
                    producer.produce(topic, value(i, ts), ids[i].encode())
                    break
                except BufferError:
                    producer.poll(0.001)
            i += 1
        producer.poll(0)
        wait = start + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    left = producer.flush(30)
    if left:
        raise _BenchError(f"{left} latency events not delivered")
    return sent_at


def read_outputs(bootstrap: str, topic: str, stop: Any, on_message: Any) -> None:
    """Read ``topic`` from the beginning until ``stop`` is set, calling
    ``on_message(value, create_time_s, received_s)``; the receive time is taken when the first
    message of a poll arrives (``poll`` returns as soon as one does)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "streamfuse-bench-latency",
            "fetch.wait.max.ms": 5,
        }
    )
    consumer.assign([KafkaTopicPartition(topic, p, -2) for p in range(PARTITIONS)])  # beginning
    try:
        while not stop.is_set():
            first = consumer.poll(0.05)
            if first is None:
                continue
            now = time.time()
            for m in (first, *consumer.consume(num_messages=1000, timeout=0)):
                if m.error() is None:
                    on_message(m.value(), m.timestamp()[1] / 1000, now)
    finally:
        consumer.close()
