"""Topic checks and consumer lag over librdkafka's admin client and an unsubscribed consumer."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicCollection
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from worker.config import Settings
from worker.errors import KafkaCallStuckError, TransportError
from worker.transport.base import GroupDescription, Offsets, TopicPartition
from worker.transport.deadline import MARGIN_S, bounded
from worker.transport.librdkafka.clients import (
    admin_config,
    build,
    make_admin,
    make_consumer,
    wait_for_broker,
)
from worker.transport.topics import check_copartitioned, missing_topics

__all__ = ["LibrdkafkaAdmin"]

log = logging.getLogger("streamfuse.kafka")
TIMEOUT_S = 10.0
# librdkafka's ConsumerGroupState names, in the coordinator's own spelling (as kafka-python's)
_STATES = {
    "STABLE": "Stable",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "EMPTY": "Empty",
    "DEAD": "Dead",
    "UNKNOWN": "Unknown",
}


class LibrdkafkaAdmin:
    """:class:`worker.transport.base.Admin`; clients built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: AdminClient | None = None
        self._lag_consumer: Consumer | None = None

    def _client(self) -> AdminClient:
        if self._admin is None:
            admin = build(make_admin, admin_config(self.settings), "client")
            wait_for_broker(self.settings, admin)
            self._admin = admin
        return self._admin

    def ensure_topics(self) -> None:
        admin = self._client()
        t = self.settings.topics
        try:
            missing = missing_topics(t, set(admin.list_topics(timeout=TIMEOUT_S).topics))
            if missing:
                futures = admin.create_topics(
                    [NewTopic(n, t.partitions, t.replication_factor) for n in missing]
                )
                for future in futures.values():
                    try:
                        future.result(TIMEOUT_S)
                    except KafkaException as exc:
                        if "already exists" not in str(exc).lower():
                            raise
                log.info("created topics %s", ", ".join(missing))
            if t.labels:
                check_copartitioned(t, self._partition_counts([t.input, t.labels]))
        except KafkaException as exc:
            raise TransportError(f"checking the topics failed ({exc})") from exc

    def _partition_counts(self, topics: list[str]) -> dict[str, int]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            metadata = self._client().list_topics(timeout=TIMEOUT_S).topics
            counts = {n: len(metadata[n].partitions) if n in metadata else 0 for n in topics}
            if all(counts.values()) or time.monotonic() > deadline:
                return counts
            time.sleep(0.1)

    def _consumer(self) -> Consumer:
        if self._lag_consumer is None:
            config = {
                **admin_config(self.settings, "-lag"),
                "group.id": self.settings.kafka.group_id,
                "enable.auto.commit": False,
            }
            self._lag_consumer = build(make_consumer, config, "client")
        return self._lag_consumer

    def committed(self) -> Offsets:
        topic = self.settings.topics.input
        try:
            consumer = self._consumer()
            metadata = consumer.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
            if metadata is None or not metadata.partitions:
                return {}
            tps = [KafkaTopicPartition(topic, p) for p in sorted(metadata.partitions)]
            committed = consumer.committed(tps, timeout=TIMEOUT_S)
        except KafkaException as exc:
            raise TransportError(f"reading the committed offsets failed ({exc})") from exc
        return {
            TopicPartition(topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0
        }

    def describe_group(self) -> GroupDescription:
        group, topic = self.settings.kafka.group_id, self.settings.topics.input
        try:
            futures = self._client().describe_consumer_groups([group], request_timeout=TIMEOUT_S)
            # the future has its request's timeout; the deadline is for a library that ignores it
            found = bounded(
                lambda: futures[group].result(TIMEOUT_S),
                "describe_consumer_groups",
                TIMEOUT_S + MARGIN_S,
                "admin",
            )
        except (KafkaException, KafkaCallStuckError) as exc:
            raise TransportError(f"describing the group failed ({exc})") from exc
        members = {
            str(m.member_id): frozenset(
                TopicPartition(tp.topic, tp.partition)
                for tp in (m.assignment.topic_partitions if m.assignment is not None else [])
                if tp.topic == topic
            )
            for m in found.members
        }
        state = getattr(found.state, "name", str(found.state))
        return GroupDescription(_STATES.get(state, state), members)

    def topic_id(self) -> str | None:
        topic = self.settings.topics.input
        try:
            futures = self._client().describe_topics(
                TopicCollection([topic]), request_timeout=TIMEOUT_S
            )
            found = bounded(
                lambda: futures[topic].result(TIMEOUT_S),
                "describe_topics",
                TIMEOUT_S + MARGIN_S,
                "admin",
            )
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return None
            raise TransportError(f"describing the input topic failed ({exc})") from exc
        except KafkaCallStuckError as exc:
            raise TransportError(f"describing the input topic failed ({exc})") from exc
        return str(found.topic_id)

    def lag(self) -> dict[TopicPartition, int]:
        topic = self.settings.topics.input
        try:
            consumer = self._consumer()
            metadata = consumer.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
            if metadata is None or not metadata.partitions:
                return {}
            tps = [KafkaTopicPartition(topic, p) for p in sorted(metadata.partitions)]
            committed = consumer.committed(tps, timeout=TIMEOUT_S)
            lags = {}
            for tp in committed:
                low, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
                start = tp.offset if tp.offset >= 0 else low  # nothing committed: from the start
                lags[TopicPartition(topic, tp.partition)] = max(0, high - start)
            return lags
        except KafkaException as exc:
            raise TransportError(f"reading the consumer lag failed ({exc})") from exc

    def close(self) -> None:
        consumer, self._lag_consumer = self._lag_consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception as exc:  # closing a broken client is best effort
                log.debug("closing the lag consumer failed: %s", exc)
        self._admin = None
