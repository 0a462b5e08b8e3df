"""The transport contract: the same cases over the in-memory fake (tests/support/fake_transport.py),
kafka-python and librdkafka, so that the fake the loop's tests run on cannot drift from the real
adapters (issue 22, Build 4).

Each case speaks only to the :mod:`worker.transport.base` protocols, through a :class:`Harness`
that builds a subscribed source over a two-partition input topic, a sink, and reads back what
was published and committed. The real adapters run on the session's broker (``kafka`` mark).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from kafka import KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.admin import NewPartitions
from kafka.errors import IllegalStateError, TopicAlreadyExistsError
from kafka.errors import KafkaError as KafkaPythonError

from tests.support.fake_transport import FakeAdmin, FakeSink, FakeSource, Log
from tests.support.kafka import Broker, unique, wait_for
from worker.batch.records import InRecord, OutRecord
from worker.config import settings_from_dict
from worker.errors import KafkaCallStuckError, TransactionAbortedError, TransportError
from worker.transport import (
    Admin,
    GroupState,
    GroupToken,
    Offsets,
    Sink,
    Source,
    TopicPartition,
    open_transport,
)
from worker.transport.deadline import MARGIN_S, stuck_calls, wait_unstuck

OUT = "out"  # the fake's output topic; the real harnesses make their own
WATCHDOG_S = 5.0  # kafka.watchdog_s of the real harnesses
REFRESH_S = 2.0  # kafka.metadata_refresh_s of the real harnesses (the default is 30)
REBALANCE_S = 15.0  # time to rebalance onto a new partition once the metadata shows it


class Harness:
    """What a case needs of one transport."""

    name: str
    input: str
    output: str
    deadline_s: float  # how long past a flush's timeout a hung flush is noticed, at most

    def source(self) -> Source:
        """Subscribed to the input topic (two partitions), with both partitions assigned."""
        raise NotImplementedError

    def produce(self, partition: int, values: list[bytes], timestamp_ms: int | None = None) -> None:
        """Sent by a producer, each with ``timestamp_ms`` as its CreateTime (None: now)."""
        raise NotImplementedError

    def sink(self, transactional: bool = False) -> Sink:
        raise NotImplementedError

    def admin(self) -> Admin:
        raise NotImplementedError

    def published(self, expected: int, committed_only: bool) -> list[bytes]:
        """The output topic's values (at least ``expected`` of them, if they come)."""
        raise NotImplementedError

    def committed(self) -> Offsets:
        raise NotImplementedError

    def hang(self, sink: Sink, call: str) -> None:
        """The sink's next ``call`` never returns (until :meth:`release`)."""
        raise NotImplementedError

    def oversized(self) -> OutRecord:
        """A record that ``send`` or ``flush`` refuses."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def grow(self, n_partitions: int) -> None:
        """The input topic grows to ``n_partitions``, each with a leader."""
        raise NotImplementedError

    def delete(self) -> None:
        """The input topic is deleted (and gone from the brokers' metadata)."""
        raise NotImplementedError

    def create(self) -> None:
        """The input topic is created again, with two partitions, each with a leader."""
        raise NotImplementedError

    def refuse(self, source: Source, call: str) -> None:
        """The source's client refuses its next ``call`` ("commit", "seek") with an error of
        its own (kafka-python's raised at once by commit_async, say, with no coordinator)."""
        raise NotImplementedError


class FakeHarness(Harness):
    name = "fake"

    def __init__(self) -> None:
        self.log = Log("in", partitions={0: [], 1: []})
        self.input, self.output = "in", OUT
        self.sinks: list[FakeSink] = []
        self.src: FakeSource | None = None
        self.deadline_s = 0.2

    def source(self) -> Source:
        self.src = FakeSource(self.log)
        return self.src

    def produce(self, partition: int, values: list[bytes], timestamp_ms: int | None = None) -> None:
        self.log.append(partition, values, timestamp_ms)

    def sink(self, transactional: bool = False) -> Sink:
        sink = FakeSink(self.log, self.src)
        self.sinks.append(sink)
        return sink

    def admin(self) -> Admin:
        return FakeAdmin(self.log)

    def published(self, expected: int, committed_only: bool) -> list[bytes]:
        return [r.value for r in self.log.published.get(self.output, [])]

    def committed(self) -> Offsets:
        return dict(self.log.committed)

    def hang(self, sink: Sink, call: str) -> None:
        assert isinstance(sink, FakeSink)
        sink.hangs.next[call] = 1

    def oversized(self) -> OutRecord:
        self.sinks[-1].fail_next_flushes = 1  # the fake checks no sizes: it refuses the flush
        return OutRecord(None, b"x", [])

    def release(self) -> None:
        for sink in self.sinks:
            sink.release()

    def grow(self, n_partitions: int) -> None:
        self.log.grow(n_partitions)

    def delete(self) -> None:
        self.log.delete()

    def create(self) -> None:
        self.log.create(2)

    def refuse(self, source: Source, call: str) -> None:
        assert isinstance(source, FakeSource)
        source.refuse_next[call] = 1


class _Hanging:
    """A client whose ``call`` blocks until ``gate`` is set; everything else is the client's."""

    def __init__(self, client: Any, call: str, gate: threading.Event) -> None:
        self._client, self._call, self._gate = client, call, gate

    def __getattr__(self, name: str) -> Any:
        if name == self._call:
            return lambda *args, **kwargs: self._gate.wait()
        return getattr(self._client, name)


class _Refusing:
    """A client whose ``call`` raises ``error`` once; everything else is the client's."""

    def __init__(self, client: Any, call: str, error: Exception) -> None:
        self._client, self._call, self._error = client, call, error
        self._refused = False

    def __getattr__(self, name: str) -> Any:
        if name == self._call and not self._refused:
            self._refused = True

            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise self._error

            return refuse
        return getattr(self._client, name)


class BrokerHarness(Harness):
    def __init__(self, kafka: Broker, library: str) -> None:
        self.kafka = kafka
        self.name = library
        self.input = kafka.create_topic(unique("contract-in"), 2)
        self.output = kafka.create_topic(unique("contract-out"), 1)
        self.group = unique("contract")
        self.deadline_s = MARGIN_S + 1.0
        self.gate = threading.Event()
        self.closing: list[Callable[[], None]] = []
        self._producer: KafkaProducer | None = None

    def settings(self, transactional: bool = False) -> Any:
        return settings_from_dict(
            {
                "kafka": {
                    "bootstrap_servers": self.kafka.bootstrap,
                    "group_id": self.group,
                    "library": self.name,
                    "watchdog_s": WATCHDOG_S,
                    "metadata_refresh_s": REFRESH_S,
                    "processing_guarantee": "exactly_once" if transactional else "at_least_once",
                },
                "topics": {"input": self.input, "output": self.output},
                "models": [{"name": "m"}],
                "strategy": {"name": "soft_vote"},
            },
            environ={},
        )

    def source(self) -> Source:
        source = open_transport(self.settings()).source()
        self.closing.append(source.close)
        wait_for(
            lambda: not source.poll(0.1, 512).records and len(source.assignment()) == 2,
            timeout=60,
            what="both partitions assigned",
        )
        return source

    def produce(self, partition: int, values: list[bytes], timestamp_ms: int | None = None) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.kafka.bootstrap)
            self.closing.append(self._producer.close)
        futures = [
            self._producer.send(self.input, v, partition=partition, timestamp_ms=timestamp_ms)
            for v in values
        ]
        for future in futures:
            future.get(timeout=30)

    def sink(self, transactional: bool = False) -> Sink:
        sink = open_transport(self.settings(transactional)).sink()
        if transactional:
            sink.init_transactions()
        self.closing.append(lambda: sink.close(5))
        return sink

    def admin(self) -> Admin:
        admin = open_transport(self.settings()).admin()
        self.closing.append(admin.close)
        return admin

    def published(self, expected: int, committed_only: bool) -> list[bytes]:
        isolation = "read_committed" if committed_only else "read_uncommitted"
        records = self.kafka.consume_all(
            self.output, expected, timeout=30, isolation_level=isolation, idle_s=1.0
        )
        return [r.value for r in records]

    def committed(self) -> Offsets:
        tps = [KafkaTopicPartition(self.input, p) for p in (0, 1)]
        found = self.kafka.admin.list_group_offsets({self.group: tps}).get(self.group) or {}
        return {
            TopicPartition(tp.topic, tp.partition): o.offset
            for tp, o in found.items()
            if o is not None and o.offset >= 0
        }

    def hang(self, sink: Sink, call: str) -> None:
        client: Any = sink
        client.producer = _Hanging(client.producer, call, self.gate)

    def oversized(self) -> OutRecord:
        return OutRecord(None, b"x" * (2 << 20), [])  # 2 MiB: past every default size limit

    def release(self) -> None:
        self.gate.set()

    def grow(self, n_partitions: int) -> None:
        self.kafka.admin.create_partitions({self.input: NewPartitions(n_partitions)})

        def led() -> bool:
            try:
                parts = self.kafka.admin.describe_topics([self.input])[0].get("partitions", [])
            except KafkaPythonError:
                return False
            return len(parts) == n_partitions and all(p.get("leader_id", -1) >= 0 for p in parts)

        wait_for(led, what=f"{self.input} grown to {n_partitions} partitions")
        self._producer = None  # a new one, whose metadata has the new partitions

    def delete(self) -> None:
        self.kafka.admin.delete_topics([self.input])

        def gone() -> bool:
            try:
                return self.input not in self.kafka.admin.list_topics()
            except KafkaPythonError:
                return False

        wait_for(gone, what=f"{self.input} deleted")

    def create(self) -> None:
        def created() -> bool:  # refused while the deletion is still under way
            try:
                self.kafka.create_topic(self.input, 2)
            except TopicAlreadyExistsError:
                return False
            return True

        wait_for(created, what=f"{self.input} created again")
        self._producer = None

    def refuse(self, source: Source, call: str) -> None:
        client: Any = source
        error: Exception
        if self.name == "kafka-python":
            method = {"commit": "commit_async", "seek": "seek"}[call]
            error = IllegalStateError("injected: refused")
        else:
            method = call
            error = KafkaException(KafkaError(KafkaError._STATE, "injected: refused"))
        client.consumer = _Refusing(client.consumer, method, error)


@pytest.fixture(
    params=[
        "fake",
        pytest.param("kafka-python", marks=pytest.mark.kafka),
        pytest.param("confluent-kafka", marks=pytest.mark.kafka),
    ]
)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    h: Harness
    if request.param == "fake":
        h = FakeHarness()
    else:
        h = BrokerHarness(request.getfixturevalue("kafka"), request.param)
    try:
        yield h
    finally:
        h.release()
        for close in reversed(getattr(h, "closing", [])):
            try:
                close()
            except Exception:  # a case that failed may leave a client half closed
                pass
        assert wait_unstuck(10.0), stuck_calls()


def read(source: Source, n: int, timeout_s: float = 30.0) -> list[InRecord]:
    records: list[InRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < n and time.monotonic() < deadline:
        records += source.poll(0.2, 512).records
    return records


def transact(
    sink: Sink, topic: str, value: bytes, offsets: Offsets, token: GroupToken | None
) -> None:
    """One transaction in its steps: a record sent, ``offsets`` added, committed."""
    sink.begin_transaction()
    sink.send(topic, [OutRecord(None, value, [])])
    sink.send_offsets_to_transaction(offsets, token)
    sink.commit_transaction()


def values(prefix: str, n: int) -> list[bytes]:
    return [f"{prefix}{i}".encode() for i in range(n)]


# -- the source ----------------------------------------------------------------------------------


def test_a_poll_returns_records_in_partition_order_with_their_span(harness: Harness) -> None:
    source = harness.source()
    harness.produce(0, values("a", 5))
    harness.produce(1, values("b", 3))
    polled_span: dict[TopicPartition, tuple[int, int]] = {}
    records: list[InRecord] = []
    deadline = time.monotonic() + 30
    while len(records) < 8 and time.monotonic() < deadline:
        polled = source.poll(0.2, 512)
        for tp, (first, last) in polled.span.items():
            old = polled_span.get(tp, (first, last))
            polled_span[tp] = (min(old[0], first), max(old[1], last))
        records += polled.records
    tp0, tp1 = TopicPartition(harness.input, 0), TopicPartition(harness.input, 1)
    assert polled_span == {tp0: (0, 4), tp1: (0, 2)}
    by_partition = {p: [r.value for r in records if r.partition == p] for p in (0, 1)}
    assert by_partition == {0: values("a", 5), 1: values("b", 3)}
    assert [r.offset for r in records if r.partition == 0] == list(range(5))


def test_headers_go_out_with_a_record_and_come_back_in_order(harness: Harness) -> None:
    source = harness.source()
    headers = [("traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"), ("x-t", b"1")]
    sink = harness.sink()
    sink.send(harness.input, [OutRecord(None, b"with", headers), OutRecord(None, b"none", [])])
    sink.flush(30)
    sink.close(10)
    got = {r.value: [tuple(h) for h in r.headers or ()] for r in read(source, 2)}
    assert got == {b"with": headers, b"none": []}


def test_a_record_carries_its_kafka_timestamp_in_ms(harness: Harness) -> None:
    # The event time of an event that gives none (issue 24): CreateTime as the producer set it.
    source = harness.source()
    given = 1_764_390_000_123
    harness.produce(0, values("given", 2), timestamp_ms=given)
    before = int(time.time() * 1000)
    harness.produce(1, values("now", 2))
    after = int(time.time() * 1000)
    got = {r.value: r.timestamp for r in read(source, 4)}
    assert {v: got[v] for v in values("given", 2)} == dict.fromkeys(values("given", 2), given)
    assert all(before <= got[v] <= after for v in values("now", 2)), (before, got, after)


def test_seek_rewinds_assigned_partitions_and_ignores_others(harness: Harness) -> None:
    source = harness.source()
    harness.produce(0, values("a", 5))
    assert len(read(source, 5)) == 5
    source.seek({TopicPartition(harness.input, 0): 2, TopicPartition("not-assigned", 0): 0})
    again = read(source, 3)
    assert [(r.partition, r.offset) for r in again] == [(0, 2), (0, 3), (0, 4)]


def test_a_waiting_commit_is_what_seek_to_committed_returns_to(harness: Harness) -> None:
    source = harness.source()
    harness.produce(0, values("a", 5))
    harness.produce(1, values("b", 3))
    assert len(read(source, 8)) == 8
    tp0, tp1 = TopicPartition(harness.input, 0), TopicPartition(harness.input, 1)
    source.commit({tp0: 3, tp1: 1}, wait=True)
    assert {tp: o for tp, o in harness.committed().items() if tp in (tp0, tp1)} == {
        tp0: 3,
        tp1: 1,
    }
    source.seek_to_committed()
    again = read(source, 4)
    assert sorted((r.partition, r.offset) for r in again) == [(0, 3), (0, 4), (1, 1), (1, 2)]


def test_a_refused_async_commit_raises_transport_error_and_a_later_commit_covers_it(
    harness: Harness,
) -> None:
    source = harness.source()
    harness.produce(0, values("a", 4))
    assert len(read(source, 4)) == 4
    tp0 = TopicPartition(harness.input, 0)
    harness.refuse(source, "commit")
    with pytest.raises(TransportError):
        source.commit({tp0: 2}, wait=False)
    source.commit({tp0: 4}, wait=True)
    assert harness.committed()[tp0] == 4


def test_a_refused_seek_raises_transport_error_and_the_source_goes_on(harness: Harness) -> None:
    source = harness.source()
    harness.produce(0, values("a", 4))
    assert len(read(source, 4)) == 4
    tp0 = TopicPartition(harness.input, 0)
    harness.refuse(source, "seek")
    with pytest.raises(TransportError):
        source.seek({tp0: 1})
    source.seek({tp0: 3})
    assert [(r.partition, r.offset) for r in read(source, 1)] == [(0, 3)]


def test_a_grown_topic_is_assigned_within_the_metadata_refresh_and_its_records_polled(
    harness: Harness,
) -> None:
    source = harness.source()
    began = time.monotonic()
    harness.grow(3)
    harness.produce(2, values("c", 3))
    tp2 = TopicPartition(harness.input, 2)
    records = read(source, 3, timeout_s=REFRESH_S + REBALANCE_S)
    served_s = time.monotonic() - began
    assert tp2 in source.assignment(), f"not assigned after {served_s:.1f} s"
    assert [(r.partition, r.offset, r.value) for r in records] == [
        (2, i, v) for i, v in enumerate(values("c", 3))
    ]
    print(f"{harness.name}: a new partition's records polled {served_s:.1f} s after the growth")


def test_the_input_topics_id_is_stable_none_when_deleted_and_new_when_created_again(
    harness: Harness,
) -> None:
    admin = harness.admin()
    first = admin.topic_id()
    assert first and admin.topic_id() == first
    harness.delete()
    wait_for(lambda: admin.topic_id() is None, timeout=30, what="no id once deleted")
    harness.create()
    again = wait_for(admin.topic_id, timeout=30, what="an id once created again")
    assert again != first


def test_membership_is_reported_stable_with_the_assignment(harness: Harness) -> None:
    source = harness.source()
    tps = {TopicPartition(harness.input, p) for p in (0, 1)}
    assert source.assignment() == tps
    membership = source.membership()
    assert membership.state is GroupState.STABLE
    assert membership.n_partitions == 2 and membership.generation >= 1
    assert membership.age_s() >= 0.0
    token = source.group_token()
    assert token is not None and token == source.group_token()  # the same membership


def test_a_reset_revokes_everything_and_the_group_assigns_it_again_from_committed(
    harness: Harness,
) -> None:
    source = harness.source()
    harness.produce(0, values("a", 4))
    assert len(read(source, 4)) == 4
    tp0, tp1 = TopicPartition(harness.input, 0), TopicPartition(harness.input, 1)
    source.commit({tp0: 2}, wait=True)
    source.changes()
    source.reset()
    assert source.membership().state is GroupState.REBALANCING
    revoked = {tp for change in source.changes() for tp in change.revoked}
    assert revoked == {tp0, tp1}
    again: list[InRecord] = []
    deadline = time.monotonic() + 60
    while len(source.assignment()) < 2 or len(again) < 2:
        assert time.monotonic() < deadline, "not assigned again"
        again += source.poll(0.2, 512).records
    assert [(r.partition, r.offset) for r in again] == [(0, 2), (0, 3)]  # from committed
    assert source.membership().state is GroupState.STABLE


def test_the_group_described_lists_this_member_with_its_partitions_and_the_committed(
    harness: Harness,
) -> None:
    source = harness.source()
    harness.produce(1, values("b", 3))
    assert len(read(source, 3)) == 3
    tp0, tp1 = TopicPartition(harness.input, 0), TopicPartition(harness.input, 1)
    source.commit({tp1: 3}, wait=True)
    admin = harness.admin()
    me = source.membership().member_id
    assert me
    group = admin.describe_group()
    assert group.state == "Stable"
    assert group.members == {me: frozenset({tp0, tp1})}
    assert group.owned() == {tp0, tp1}
    assert admin.committed() == {tp1: 3}
    assert admin.lag() == {tp0: 0, tp1: 0}


# -- the sink ------------------------------------------------------------------------------------


def test_a_refused_record_fails_send_or_flush_and_the_sink_goes_on(harness: Harness) -> None:
    sink = harness.sink()
    refused = harness.oversized()
    with pytest.raises(TransportError):
        sink.send(harness.output, [refused])
        sink.flush(10)
    sink.send(harness.output, [OutRecord(b"k", b"after", [("h", b"v")])])
    sink.flush(10)
    assert harness.published(1, committed_only=False) == [b"after"]


def test_an_aborted_transaction_publishes_and_commits_nothing(harness: Harness) -> None:
    source = harness.source()
    sink = harness.sink(transactional=True)
    harness.produce(0, values("a", 3))
    assert len(read(source, 3)) == 3
    token = source.group_token()
    tp0 = TopicPartition(harness.input, 0)
    sink.begin_transaction()
    sink.send(harness.output, [OutRecord(None, b"aborted", [])])
    sink.abort_transaction(TransportError("injected: a send was refused"))
    assert tp0 not in harness.committed() or harness.committed()[tp0] <= 0
    sink.begin_transaction()
    sink.send(harness.output, [OutRecord(None, b"unvouched", [])])
    with pytest.raises(TransactionAbortedError):  # no membership vouches: aborted
        sink.send_offsets_to_transaction({tp0: 2}, None)
    transact(sink, harness.output, b"committed", {tp0: 3}, token)
    assert harness.published(1, committed_only=True) == [b"committed"]
    assert harness.committed()[tp0] == 3


def test_a_flush_that_never_returns_is_named_within_its_deadline_and_replaced(
    harness: Harness,
) -> None:
    sink = harness.sink()
    harness.hang(sink, "flush")
    sink.send(harness.output, [OutRecord(None, b"held", [])])
    began = time.monotonic()
    with pytest.raises(KafkaCallStuckError) as stuck:
        sink.flush(0.5)
    assert time.monotonic() - began < 0.5 + harness.deadline_s
    assert stuck.value.call == "flush"
    assert "producer.flush" in [name for name, _ in stuck_calls()]
    sink.replace()
    sink.send(harness.output, [OutRecord(None, b"after", [])])
    sink.flush(10)
    assert b"after" in harness.published(1, committed_only=False)


def test_a_transaction_call_that_never_returns_is_named_and_fenced_by_the_replacement(
    harness: Harness,
) -> None:
    # librdkafka's send_offsets_to_transaction() while the group coordinator is unreachable
    # (librdkafka #5456): the deadline names it, the new producer's init_transactions fences
    # the stuck one, whose transaction is then never visible.
    source = harness.source()
    sink = harness.sink(transactional=True)
    harness.produce(0, values("a", 3))
    assert len(read(source, 3)) == 3
    token = source.group_token()
    tp0 = TopicPartition(harness.input, 0)
    harness.hang(sink, "send_offsets_to_transaction")
    began = time.monotonic()
    sink.begin_transaction()
    sink.send(harness.output, [OutRecord(None, b"stuck", [])])
    with pytest.raises(KafkaCallStuckError) as stuck:
        sink.send_offsets_to_transaction({tp0: 2}, token)
    assert time.monotonic() - began < WATCHDOG_S + harness.deadline_s
    assert stuck.value.call == "send_offsets_to_transaction"
    assert "producer.send_offsets_to_transaction" in [name for name, _ in stuck_calls()]
    sink.replace()
    transact(sink, harness.output, b"committed", {tp0: 3}, source.group_token())
    assert harness.published(1, committed_only=True) == [b"committed"]
    assert harness.committed()[tp0] == 3
