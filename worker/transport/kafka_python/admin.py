"""Topic checks and consumer lag over kafka-python's admin client."""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from worker.config import Settings
from worker.errors import KafkaCallStuckError, TransportError
from worker.transport.base import GroupDescription, Offsets, TopicPartition
from worker.transport.deadline import MARGIN_S, bounded
from worker.transport.kafka_python.clients import admin_client, common_config
from worker.transport.topics import check_copartitioned, missing_topics

__all__ = ["KafkaPythonAdmin"]

log = logging.getLogger("streamfuse.kafka")

# Lag requests: short enough that stopping the lag thread is not held up for long by a request
# to an unreachable broker.
LAG_TIMEOUT_MS = 10_000


class KafkaPythonAdmin:
    """:class:`worker.transport.base.Admin`. Its clients are built on first use: the start-up
    admin waits for the broker (``kafka.connect_timeout_s``); the lag clients give up after
    :data:`LAG_TIMEOUT_MS` and are rebuilt after a failure (:meth:`close`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: KafkaAdminClient | None = None
        self._lag_admin: KafkaAdminClient | None = None
        self._lag_consumer: KafkaConsumer | None = None

    def ensure_topics(self) -> None:
        if self._admin is None:
            self._admin = admin_client(self.settings)
        try:
            _ensure_topics(self.settings, self._admin)
        except KafkaError as exc:
            raise TransportError(f"checking the topics failed ({exc})") from exc

    def lag(self) -> dict[TopicPartition, int]:
        try:
            return self._lag()
        except KafkaError as exc:
            raise TransportError(f"reading the consumer lag failed ({exc})") from exc

    def committed(self) -> Offsets:
        admin, consumer = self._lag_clients()
        topic = self.settings.topics.input
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [KafkaTopicPartition(topic, p) for p in sorted(partitions)]
            found = _committed(admin, self.settings.kafka.group_id, tps) if tps else {}
        except KafkaError as exc:
            raise TransportError(f"reading the committed offsets failed ({exc})") from exc
        return {
            TopicPartition(tp.topic, tp.partition): om.offset
            for tp, om in found.items()
            if om is not None and om.offset >= 0
        }

    def describe_group(self) -> GroupDescription:
        admin, _ = self._lag_clients()
        group = self.settings.kafka.group_id
        try:
            # the request has the lag clients' timeout; the deadline covers the coordinator look-up
            described = bounded(
                lambda: admin.describe_groups([group]),
                "describe_groups",
                LAG_TIMEOUT_MS / 1000 + MARGIN_S,
                "admin",
            )
        except (KafkaError, KafkaCallStuckError) as exc:
            raise TransportError(f"describing the group failed ({exc})") from exc
        found = described.get(group) or {}
        if found.get("error"):
            raise TransportError(f"describing the group failed ({found['error']})")
        topic = self.settings.topics.input
        members = {
            str(m.get("member_id")): frozenset(_assigned(m.get("member_assignment"), topic))
            for m in found.get("members") or []
        }
        return GroupDescription(str(found.get("group_state") or "Unknown"), members)

    def topic_id(self) -> str | None:
        admin, _ = self._lag_clients()
        try:
            found = admin.describe_topics([self.settings.topics.input])
        except KafkaError as exc:
            raise TransportError(f"describing the input topic failed ({exc})") from exc
        return _topic_id(found)

    def _lag(self) -> dict[TopicPartition, int]:
        admin, consumer = self._lag_clients()
        topic = self.settings.topics.input
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [KafkaTopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return {}
        ends = consumer.end_offsets(tps)
        committed = _committed(admin, self.settings.kafka.group_id, tps)
        offsets = {tp: om.offset for tp, om in committed.items() if om is not None}
        missing = [tp for tp in tps if offsets.get(tp, -1) < 0]
        if missing:  # nothing committed there yet: lag counts from the beginning
            offsets.update(consumer.beginning_offsets(missing))
        return {TopicPartition(topic, tp.partition): max(0, ends[tp] - offsets[tp]) for tp in tps}

    def _lag_clients(self) -> tuple[KafkaAdminClient, KafkaConsumer]:
        common = common_config(
            self.settings,
            "-lag",
            request_timeout_ms=LAG_TIMEOUT_MS,
            bootstrap_timeout_ms=LAG_TIMEOUT_MS,
        )
        if self._lag_admin is None:
            self._lag_admin = KafkaAdminClient(**common)
        if self._lag_consumer is None:
            self._lag_consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **common)
        return self._lag_admin, self._lag_consumer

    def close(self) -> None:
        for client in (self._lag_consumer, self._lag_admin, self._admin):
            if client is None:
                continue
            try:
                client.close()
            except Exception as exc:  # closing a broken client is best effort
                log.debug("closing an admin client failed: %s", exc)
        self._admin = self._lag_admin = None
        self._lag_consumer = None


def _topic_id(described: list[dict[str, Any]]) -> str | None:
    """The topic id of a one-topic metadata answer; None when the topic does not exist."""
    for topic in described:
        code = int(topic.get("error_code") or 0)
        if code == UnknownTopicOrPartitionError.errno:
            return None
        if code:
            raise TransportError(f"describing the input topic failed (error code {code})")
        found = topic.get("topic_id")
        return None if found is None else str(found)
    return None


def _assigned(assignment: Any, topic: str) -> list[TopicPartition]:
    """A member's partitions of ``topic`` from its decoded assignment (an object, or the dict
    kafka-python's to_dict makes of it)."""
    if assignment is None:
        return []
    if hasattr(assignment, "partitions"):
        return [TopicPartition(t, p) for t, p in assignment.partitions() if t == topic]
    found = []
    for entry in assignment.get("assigned_partitions") or []:
        name, partitions = (
            (entry.get("topic"), entry.get("partitions")) if isinstance(entry, dict) else entry
        )
        if name == topic:
            found += [TopicPartition(topic, int(p)) for p in partitions or ()]
    return found


def _committed(admin: KafkaAdminClient, group: str, tps: list[Any]) -> dict[Any, Any]:
    # kafka-python 3 renamed list_consumer_group_offsets to list_group_offsets({group: tps}).
    if hasattr(admin, "list_group_offsets"):
        return dict(admin.list_group_offsets({group: tps}).get(group) or {})
    return dict(admin.list_consumer_group_offsets(group, partitions=tps))


def _ensure_topics(settings: Settings, admin: KafkaAdminClient) -> None:
    """Every configured topic exists (created when ``topics.create``); labels co-partitioned."""
    t = settings.topics
    missing = missing_topics(t, set(admin.list_topics()))
    if missing:
        try:
            admin.create_topics(
                [NewTopic(name, t.partitions, t.replication_factor) for name in missing]
            )
        except TopicAlreadyExistsError:
            pass
        log.info("created topics %s", ", ".join(missing))
    if t.labels:
        check_copartitioned(t, _partition_counts(admin, [t.input, t.labels]))


def _partition_counts(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while True:
        described = admin.describe_topics(topics)
        counts = {d["name"]: len(d.get("partitions") or []) for d in described}
        if all(counts.get(t, 0) > 0 for t in topics) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)
