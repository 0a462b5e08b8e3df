"""The input consumer and the labels reader over librdkafka (confluent-kafka).

librdkafka runs the rebalance callbacks (``on_assign``, ``on_revoke``, ``on_lost``) inside the
caller's ``consume``: they put :class:`AssignmentChange` events on a list the loop drains right
after, and count the membership's epoch (librdkafka's group metadata is opaque: the epoch is
what two tokens compare). Records are wrapped in a small slotted type with the attributes the
pipeline reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
)
from confluent_kafka import TopicPartition as KafkaTopicPartition

from worker.batch.records import InRecord
from worker.errors import TransportError
from worker.transport.base import (
    AssignmentChange,
    GroupState,
    GroupToken,
    Membership,
    Offsets,
    Polled,
    Span,
    TopicPartition,
)
from worker.transport.deadline import MARGIN_S, CallGuard
from worker.transport.membership import MembershipClock

__all__ = ["LibrdkafkaLabels", "LibrdkafkaSource", "Record"]

log = logging.getLogger("streamfuse.kafka")
COMMITTED_TIMEOUT_S = 10.0


class Record:
    """A consumed message as the pipeline reads it (librdkafka's ``Message`` has methods)."""

    __slots__ = ("_message", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, message: Any) -> None:
        self._message = message
        self.topic: str = message.topic()
        self.partition: int = message.partition()
        self.offset: int = message.offset()
        self.key: bytes | None = message.key()
        self.value: bytes | None = message.value()
        kind, ms = message.timestamp()
        self.timestamp: int = -1 if kind == TIMESTAMP_NOT_AVAILABLE else ms

    @property
    def headers(self) -> list[tuple[str, bytes | None]] | None:
        """Read from the message only when asked (no cost when no header is carried)."""
        headers: list[tuple[str, bytes | None]] | None = self._message.headers()
        return headers


def _ours(tps: Sequence[Any]) -> tuple[TopicPartition, ...]:
    return tuple(sorted(TopicPartition(tp.topic, tp.partition) for tp in tps))


def _names(tps: Sequence[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}:{tp.partition}" for tp in tps) or "none"


def _error(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


class LibrdkafkaSource:
    """:class:`worker.transport.base.Source` over a subscribed librdkafka :class:`Consumer`."""

    def __init__(self, consumer: Consumer, topic: str, timeout_s: float = 30.0) -> None:
        self.consumer: Consumer | None = consumer
        self.timeout_s = timeout_s  # the deadline of a waiting commit and of close
        self._guard = CallGuard("consumer")
        self._changes: list[AssignmentChange] = []
        self._assigned: tuple[TopicPartition, ...] = ()
        self._epoch = 0
        self._stable = False
        self._n_assignments = 0  # librdkafka keeps the generation opaque: what stands for it
        self._membership = MembershipClock()
        self._before_revoke: Callable[[], None] = lambda: None
        self._before_lost: Callable[[], None] = lambda: None
        self.topic = topic
        self._subscribe(consumer)

    def _subscribe(self, consumer: Consumer) -> None:
        consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    # -- callbacks, inside poll() and consume() on the loop's own thread --------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._assigned = _ours(partitions)
        self._epoch += 1
        self._n_assignments += 1
        self._stable = True
        log.info("partitions assigned: %s", _names(self._assigned))
        self._changes.append(AssignmentChange((), self._assigned))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._before_revoke()
        self._revoked(partitions)

    def _revoked(self, partitions: list[Any]) -> None:
        revoked = _ours(partitions)
        self._stable = False
        self._epoch += 1
        log.info("partitions revoked: %s", _names(revoked))
        self._assigned = tuple(tp for tp in self._assigned if tp not in revoked)
        self._changes.append(AssignmentChange(revoked, None))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        log.warning("partitions lost (the session expired): %s", _names(_ours(partitions)))
        self._before_lost()
        self._revoked(partitions)

    # -- Source ----------------------------------------------------------------------------------

    def _client(self) -> Consumer:
        if self.consumer is None:
            raise TransportError("the input consumer is closed")
        return self.consumer

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        # consume(n, timeout) waits for all n messages or the whole timeout (confluent-kafka
        # 2.16: ten messages at 50 per second took the full 200 ms of the loop's idle poll, so
        # a lightly loaded worker held each event up to 200 ms before its batch even began);
        # poll(timeout) returns at the first message, then consume(n - 1, 0) takes what is
        # already fetched, as kafka-python's poll does.
        consumer = self._client()
        try:
            message = consumer.poll(timeout_s)
            if message is None:
                return Polled([], {})
            messages = [message]
            if max_records > 1:
                messages += consumer.consume(num_messages=max_records - 1, timeout=0)
        except KafkaException as exc:
            raise TransportError(f"polling failed ({_error(exc)})") from exc
        records: list[InRecord] = []
        span: Span = {}
        for message in messages:
            err = message.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise TransportError(f"the consumer failed ({err.str()})")
                log.warning("consume reported %s", err.str())
                continue
            record = Record(message)
            records.append(record)
            tp = TopicPartition(record.topic, record.partition)
            first = span.get(tp)
            span[tp] = (record.offset if first is None else first[0], record.offset)
        return Polled(records, span)

    def changes(self) -> list[AssignmentChange]:
        changes, self._changes = self._changes, []
        return changes

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._assigned)

    def group_token(self) -> GroupToken | None:
        if not self._stable:
            return None
        return GroupToken(self._epoch, self._client().consumer_group_metadata())

    def membership(self) -> Membership:
        if not self._stable:
            state = GroupState.REBALANCING
        else:
            state = GroupState.STABLE if self._assigned else GroupState.UNASSIGNED
        return self._membership.observe(
            state, self._n_assignments, len(self._assigned), self._member_id()
        )

    def _member_id(self) -> str:
        try:
            return self._client().memberid() or ""
        except (RuntimeError, KafkaException, TransportError):  # not joined, or closed
            return ""

    def reset(self) -> None:
        consumer = self._client()
        try:
            # librdkafka reports the revoke through on_revoke inside a later poll; the loop
            # treats the partitions as revoked now
            consumer.unsubscribe()
        except KafkaException as exc:
            log.warning("leaving the group failed (%s); joining again anyway", _error(exc))
        revoked, self._assigned = self._assigned, ()
        self._stable = False
        self._epoch += 1
        log.info("partitions revoked (leaving the group to join again): %s", _names(revoked))
        self._changes.append(AssignmentChange(revoked, None))
        try:
            self._subscribe(consumer)
        except KafkaException as exc:
            raise TransportError(f"subscribing again failed ({_error(exc)})") from exc

    def before_revoke(self, commit: Callable[[], None], abort: Callable[[], None]) -> None:
        self._before_revoke, self._before_lost = commit, abort

    def seek(self, offsets: Offsets) -> None:
        consumer = self._client()
        for tp, offset in offsets.items():
            if tp in self._assigned:
                try:
                    consumer.seek(KafkaTopicPartition(tp.topic, tp.partition, offset))
                except KafkaException as exc:
                    raise TransportError(f"seeking {tp} failed ({_error(exc)})") from exc

    def seek_to_committed(self) -> None:
        consumer = self._client()
        tps = [KafkaTopicPartition(tp.topic, tp.partition) for tp in self._assigned]
        if not tps:
            return
        try:
            committed = consumer.committed(tps, timeout=COMMITTED_TIMEOUT_S)
            for tp in committed:
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                consumer.seek(KafkaTopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            raise TransportError(f"reading committed offsets failed ({_error(exc)})") from exc

    def commit(self, offsets: Offsets, wait: bool) -> None:
        native = [KafkaTopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        try:
            if wait:
                consumer = self._client()
                self._guard.run(
                    lambda: consumer.commit(offsets=native, asynchronous=False),
                    "commit",
                    self.timeout_s + MARGIN_S,
                )
            else:
                self._client().commit(offsets=native, asynchronous=True)
        except KafkaException as exc:
            raise TransportError(f"committing offsets failed ({_error(exc)})") from exc

    def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            self._guard.run(consumer.close, "close", self.timeout_s + MARGIN_S)
        self._guard.close()


class LibrdkafkaLabels:
    """:class:`worker.transport.base.LabelsReader` over an assigned librdkafka consumer."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic
        self._assigned = False

    def follow(self, partitions: Sequence[int]) -> list[int]:
        # Start at each partition's end as it is now (not as it is at the first fetch), so every
        # label produced from here on is read.
        existing = self._partitions()
        missing = [p for p in partitions if existing is not None and p not in existing]
        tps = []
        for p in partitions:
            if p in missing:
                continue
            tp = KafkaTopicPartition(self.topic, p)
            try:
                _, high = self.consumer.get_watermark_offsets(tp, timeout=10.0)
                tp.offset = high
            except KafkaException as exc:
                log.warning("cannot find the end of %s:%d yet (%s)", self.topic, p, _error(exc))
            tps.append(tp)
        self.consumer.assign(tps)
        self._assigned = bool(tps)
        return missing

    def _partitions(self) -> set[int] | None:
        """The labels topic's partitions from fresh metadata (None: not known now)."""
        try:
            topic = self.consumer.list_topics(self.topic, timeout=COMMITTED_TIMEOUT_S).topics
        except KafkaException as exc:
            log.warning("cannot read the partitions of %s now (%s)", self.topic, _error(exc))
            return None
        found = topic.get(self.topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        return set(found.partitions)

    def poll(self, max_records: int) -> list[bytes | None]:
        if not self._assigned:
            return []
        try:
            messages = self.consumer.consume(num_messages=max_records, timeout=0)
        except KafkaException as exc:
            log.warning("reading labels failed: %s", _error(exc))
            return []
        return [m.value() for m in messages if m.error() is None]

    def close(self) -> None:
        self.consumer.close()
