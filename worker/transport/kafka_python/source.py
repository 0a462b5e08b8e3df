"""The input consumer and the labels reader over kafka-python.

kafka-python 3 runs the rebalance listener on its I/O thread while ``poll`` waits (and between
polls): the listener only puts :class:`AssignmentChange` events on a queue, which the loop
drains between polls (:meth:`KafkaPythonSource.changes`).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import KafkaError
from kafka.structs import MemberState, OffsetAndMetadata

from worker.batch.records import InRecord
from worker.errors import KafkaCallStuckError, TransportError
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
from worker.transport.deadline import CallGuard, bounded
from worker.transport.membership import MembershipClock

__all__ = ["KafkaPythonLabels", "KafkaPythonSource"]

log = logging.getLogger("streamfuse.kafka")
METADATA_TIMEOUT_S = 10.0
# The shortest poll while this member is not stable: the loop polls with 0 while a batch is in
# flight, and a join whose answer comes after a poll's wait is only finished by a later poll
# that waits for it (the wedge :mod:`.rejoin` repairs).
REJOIN_POLL_S = 0.1


def _ours(tps: Iterable[Any]) -> tuple[TopicPartition, ...]:
    return tuple(sorted(TopicPartition(tp.topic, tp.partition) for tp in tps))


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}:{tp.partition}" for tp in tps) or "none"


class _Listener(ConsumerRebalanceListener):
    def __init__(self, changes: queue.SimpleQueue[AssignmentChange]) -> None:
        self.changes = changes

    # Called on kafka-python's I/O thread: must not block or touch the worker's batches.
    def on_partitions_revoked(self, revoked: Any) -> None:
        tps = _ours(revoked)
        log.info("partitions revoked: %s", _names(tps))
        self.changes.put(AssignmentChange(tps, None))

    def on_partitions_assigned(self, assigned: Any) -> None:
        tps = _ours(assigned)
        log.info("partitions assigned: %s", _names(tps))
        self.changes.put(AssignmentChange((), tps))


class KafkaPythonSource:
    """:class:`worker.transport.base.Source` over a subscribed :class:`KafkaConsumer`.

    ``consumer`` is built by the caller (:func:`.clients.input_consumer`) with ``listener``,
    the listener this source returns from :meth:`listener`.
    """

    def __init__(self, timeout_s: float = 30.0) -> None:
        self._changes: queue.SimpleQueue[AssignmentChange] = queue.SimpleQueue()
        self.consumer: KafkaConsumer | None = None
        self.timeout_s = timeout_s  # the deadline of a waiting commit and of close
        self._guard = CallGuard("consumer")
        self._membership = MembershipClock()

    def listener(self) -> ConsumerRebalanceListener:
        return _Listener(self._changes)

    def attach(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    def _client(self) -> KafkaConsumer:
        if self.consumer is None:
            raise TransportError("the input consumer is closed")
        return self.consumer

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        consumer = self._client()
        if timeout_s < REJOIN_POLL_S and not self._stable(consumer):
            timeout_s = REJOIN_POLL_S
        try:
            polled = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise TransportError(f"polling failed ({exc})") from exc
        records: list[InRecord] = []
        span: Span = {}
        for tp, tp_records in polled.items():
            if tp_records:
                records.extend(tp_records)
                span[TopicPartition(tp.topic, tp.partition)] = (
                    tp_records[0].offset,
                    tp_records[-1].offset,
                )
        return Polled(records, span)

    @staticmethod
    def _stable(consumer: KafkaConsumer) -> bool:
        metadata = consumer.group_metadata()
        return metadata is not None and metadata.state == MemberState.STABLE

    def before_revoke(self, commit: Callable[[], None], abort: Callable[[], None]) -> None:
        raise NotImplementedError("kafka-python revokes partitions on its I/O thread")

    def changes(self) -> list[AssignmentChange]:
        found = []
        while True:
            try:
                found.append(self._changes.get_nowait())
            except queue.Empty:
                return found

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(_ours(self._client().assignment()))

    def group_token(self) -> GroupToken | None:
        # kafka-python sets a new generation at the JoinGroup answer, before the assignment is
        # known: only a STABLE member's metadata can vouch for records it read.
        metadata = self._client().group_metadata()
        if metadata is None or metadata.state != MemberState.STABLE:
            return None
        return GroupToken((metadata.generation_id, metadata.member_id), metadata)

    def membership(self) -> Membership:
        consumer = self._client()
        metadata = consumer.group_metadata()
        n_partitions = len(consumer.assignment())
        if metadata is None or metadata.state != MemberState.STABLE:
            state = GroupState.REBALANCING
        else:
            state = GroupState.STABLE if n_partitions else GroupState.UNASSIGNED
        generation = metadata.generation_id if metadata is not None else 0
        member_id = (metadata.member_id or "") if metadata is not None else ""
        return self._membership.observe(state, generation, n_partitions, member_id)

    def reset(self) -> None:
        consumer = self._client()
        revoked = _ours(consumer.assignment())
        topics = sorted(consumer.subscription() or ())
        try:
            # unsubscribe() sends LeaveGroup with no timeout of its own: under the deadline
            self._guard.run(consumer.unsubscribe, "unsubscribe", self.timeout_s)
        except KafkaError as exc:
            log.warning("leaving the group failed (%s); joining again anyway", exc)
        log.info("partitions revoked (leaving the group to join again): %s", _names(revoked))
        self._changes.put(AssignmentChange(revoked, None))  # unsubscribe() calls no listener
        consumer.subscribe(topics, listener=self.listener())

    def seek(self, offsets: Offsets) -> None:
        consumer = self._client()
        assigned = consumer.assignment()
        for tp, offset in offsets.items():
            ktp = KafkaTopicPartition(tp.topic, tp.partition)
            if ktp not in assigned:
                continue
            try:
                consumer.seek(ktp, offset)
            except (KafkaError, ValueError) as exc:
                # ValueError: "Unassigned partition" when the I/O thread revoked it just now
                # (ignored, as any partition not assigned), or an offset the client refuses.
                if ktp in consumer.assignment():
                    raise TransportError(f"seeking {tp} failed ({exc})") from exc

    def seek_to_committed(self) -> None:
        consumer = self._client()
        try:
            for tp in consumer.assignment():
                committed = consumer.committed(tp, timeout_ms=10_000)
                if committed is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
        except KafkaError as exc:
            raise TransportError(f"reading committed offsets failed ({exc})") from exc

    def commit(self, offsets: Offsets, wait: bool) -> None:
        native = {
            KafkaTopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, None, -1)
            for tp, offset in offsets.items()
        }
        consumer = self._client()
        if not wait:
            try:
                consumer.commit_async(native, callback=_on_commit)
            except KafkaError as exc:
                raise TransportError(f"committing offsets failed ({exc})") from exc
            return
        try:
            self._guard.run(lambda: consumer.commit(native), "commit", self.timeout_s)
        except KafkaError as exc:
            raise TransportError(f"committing offsets failed ({exc})") from exc

    def close(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            self._guard.run(lambda: consumer.close(autocommit=False), "close", self.timeout_s)
        self._guard.close()


def _on_commit(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.warning("an async offset commit failed (%s); the next commit covers it", response)


class KafkaPythonLabels:
    """:class:`worker.transport.base.LabelsReader` over an unsubscribed :class:`KafkaConsumer`."""

    def __init__(self, consumer: KafkaConsumer, topic: str) -> None:
        self.consumer = consumer
        self.topic = topic

    def follow(self, partitions: Sequence[int]) -> list[int]:
        existing = self._partitions()
        missing = [p for p in partitions if existing is not None and p not in existing]
        tps = [KafkaTopicPartition(self.topic, p) for p in partitions if p not in missing]
        self.consumer.assign(tps)
        # Resolve the start ("latest") now, so every label produced from here on is read,
        # rather than at some later poll that could skip labels produced in between.
        for tp in tps:
            try:
                self.consumer.position(tp, timeout_ms=10_000)
            except KafkaError as exc:
                log.warning("cannot find the end of %s:%d yet (%s)", tp.topic, tp.partition, exc)
        return missing

    def _partitions(self) -> set[int] | None:
        """The labels topic's partitions from fresh metadata (None: not known now)."""
        try:
            # topics() fetches every topic's metadata now (the cached count may predate a
            # growth); a call with no timeout of its own, so under a deadline.
            bounded(self.consumer.topics, "metadata", METADATA_TIMEOUT_S)
            return self.consumer.partitions_for_topic(self.topic) or None
        except (KafkaError, KafkaCallStuckError) as exc:
            log.warning("cannot read the partitions of %s now (%s)", self.topic, exc)
            return None

    def poll(self, max_records: int) -> list[bytes | None]:
        if not self.consumer.assignment():
            return []
        try:
            polled = self.consumer.poll(timeout_ms=0, max_records=max_records)
        except KafkaError as exc:
            log.warning("reading labels failed: %s", exc)
            return []
        return [r.value for batch in polled.values() for r in batch]

    def close(self) -> None:
        self.consumer.close()
