"""The foundation's proof that the real broker works the way the worker relies on."""

from __future__ import annotations

import os
import subprocess

import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.support.kafka import DEV_KAFKA, Broker

pytestmark = pytest.mark.kafka


def test_thousand_messages_round_trip_through_a_consumer_group(
    kafka: Broker, topic_factory, group_factory
) -> None:
    topic = topic_factory("roundtrip", partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5)
    futures = [
        producer.send(topic, key=str(i).encode(), value=f"message-{i}".encode())
        for i in range(1000)
    ]
    producer.flush()
    for future in futures:
        future.get(timeout=10)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        group_id=group_factory("roundtrip"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen: list[bytes] = []
    try:
        for _ in range(300):
            for records in consumer.poll(timeout_ms=200).values():
                seen.extend(r.value for r in records)
            if len(seen) >= 1000:
                break
        consumer.commit()
    finally:
        consumer.close()
    print(f"produced 1000, consumed {len(seen)} through a consumer group")
    assert sorted(seen) == sorted(f"message-{i}".encode() for i in range(1000))


def test_read_committed_sees_committed_transactions_only(kafka: Broker, topic_factory) -> None:
    topic = topic_factory("txn")
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id="tests-txn")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, b"committed-1")
    producer.send(topic, b"committed-2")
    producer.commit_transaction()
    producer.begin_transaction()
    producer.send(topic, b"aborted")
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topic, b"committed-3")
    producer.commit_transaction()
    producer.close()

    committed = kafka.consume_all(topic, 3, isolation_level="read_committed", idle_s=1.0)
    everything = kafka.consume_all(topic, 4, isolation_level="read_uncommitted", idle_s=1.0)
    print(f"read_committed saw {len(committed)}, read_uncommitted saw {len(everything)}")
    assert [r.value for r in committed] == [b"committed-1", b"committed-2", b"committed-3"]
    assert b"aborted" in [r.value for r in everything]


def test_dev_kafka_start_is_idempotent_and_status_reports_up(kafka: Broker) -> None:
    env = {**os.environ, "KAFKA_PORT": str(kafka.port)}
    again = subprocess.run([DEV_KAFKA, "start"], env=env, capture_output=True, text=True)
    status = subprocess.run([DEV_KAFKA, "status"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == kafka.bootstrap
    assert status.stdout.startswith("up: " + kafka.bootstrap)
