"""The librdkafka adapter (confluent-kafka, extra ``streamfuse[librdkafka]``).

Selected by ``kafka.library: confluent-kafka``. :class:`LibrdkafkaTransport` builds the
:mod:`worker.transport.base` objects from the settings; ``kafka.client``, ``kafka.consumer`` and
``kafka.producer`` take librdkafka's own (dotted) key names.
"""

from __future__ import annotations

from worker.config import Settings
from worker.transport.librdkafka.admin import LibrdkafkaAdmin
from worker.transport.librdkafka.clients import (
    build,
    check_settings,
    consumer_config,
    labels_config,
    make_consumer,
    make_producer,
    producer_config,
    wait_for_broker,
)
from worker.transport.librdkafka.sink import LibrdkafkaSink
from worker.transport.librdkafka.source import LibrdkafkaLabels, LibrdkafkaSource

__all__ = [
    "LibrdkafkaAdmin",
    "LibrdkafkaLabels",
    "LibrdkafkaSink",
    "LibrdkafkaSource",
    "LibrdkafkaTransport",
]


class LibrdkafkaTransport:
    """:class:`worker.transport.Transport` for confluent-kafka: opening it checks
    ``kafka.client``, ``kafka.consumer`` and ``kafka.producer`` as librdkafka would take them
    (:class:`~worker.errors.ConfigError`)."""

    name = "confluent-kafka"

    def __init__(self, settings: Settings) -> None:
        check_settings(settings)
        self.settings = settings

    def admin(self) -> LibrdkafkaAdmin:
        return LibrdkafkaAdmin(self.settings)

    def sink(self) -> LibrdkafkaSink:
        s = self.settings

        def make() -> object:
            producer = build(make_producer, producer_config(s), "producer")
            wait_for_broker(s, producer)
            return producer

        return LibrdkafkaSink(
            make,  # type: ignore[arg-type]
            transactional=s.kafka.processing_guarantee == "exactly_once",
            timeout_s=s.kafka.watchdog_s,
        )

    def source(self) -> LibrdkafkaSource:
        consumer = build(make_consumer, consumer_config(self.settings), "consumer")
        wait_for_broker(self.settings, consumer)
        return LibrdkafkaSource(
            consumer, self.settings.topics.input, self.settings.kafka.watchdog_s
        )

    def labels(self) -> LibrdkafkaLabels | None:
        topic = self.settings.topics.labels
        if not topic:
            return None
        consumer = build(make_consumer, labels_config(self.settings), "consumer")
        return LibrdkafkaLabels(consumer, topic)
