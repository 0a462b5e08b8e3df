"""LagMonitor against the real broker: N produced, M committed -> a lag of N - M per partition."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import CollectorRegistry

from tests.support.kafka import Broker, wait_for
from worker.config import Settings, settings_from_dict
from worker.metrics import Metrics
from worker.service.lag import LagMonitor
from worker.transport import open_transport

pytestmark = pytest.mark.kafka


def settings_for(bootstrap: str, topic: str, group: str, interval: float = 0.1) -> Settings:
    return settings_from_dict(
        {
            "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
            "topics": {"input": topic},
            "models": [{"name": "m"}],
            "strategy": {"name": "soft_vote"},
            "metrics": {"lag_interval_s": interval},
        },
        environ={},
    )


def test_lag_is_end_minus_committed_per_partition(
    kafka: Broker, topic_factory: Callable[..., str], group_factory: Callable[[str], str]
) -> None:
    topic = topic_factory("lag", partitions=2)
    group = group_factory("lag")
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
    counts = {0: 7, 1: 4}
    for partition, n in counts.items():
        for i in range(n):
            producer.send(topic, value=b"x%d" % i, partition=partition)
    producer.flush()
    producer.close()
    committer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id=group, enable_auto_commit=False
    )
    committer.commit({TopicPartition(topic, 0): OffsetAndMetadata(5, "", -1)})
    committer.close()

    registry = CollectorRegistry()
    settings = settings_for(kafka.bootstrap, topic, group)
    monitor = LagMonitor(settings, Metrics(registry), open_transport(settings).admin)

    def lag(partition: int) -> float | None:
        return registry.get_sample_value(
            "streamfuse_consumer_lag", {"topic": topic, "partition": str(partition)}
        )

    monitor.start()
    try:
        # partition 1 has no committed offset: lag is everything from the beginning
        wait_for(lambda: lag(0) == 2 and lag(1) == 4, timeout=30, what="lag gauges")
    finally:
        started = time.monotonic()
        monitor.stop()
        assert time.monotonic() - started < 5  # the interval wait is an Event, not a sleep


def test_unreachable_broker_warns_once_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for("127.0.0.1:1", "t", "g")
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"client": {"bootstrap_timeout_ms": 200}})
        }
    )
    monitor = LagMonitor(settings, Metrics(CollectorRegistry()), open_transport(settings).admin)
    with caplog.at_level(logging.WARNING, logger="streamfuse.lag"):
        for _ in range(3):
            monitor._tick()
    warnings = [r for r in caplog.records if r.name == "streamfuse.lag"]
    assert len(warnings) == 1
    monitor.stop()
