"""An in-memory Kafka for unit tests of the loop (httpx's ``MockTransport`` is the model).

:class:`Log` holds partitions of records, committed offsets and what was published (committed
transactions only, as a ``read_committed`` reader sees them). :class:`FakeSource` and
:class:`FakeSink` implement the transport protocols over it, with failures injected by the test
(``fail_next_*``) and rebalances queued the way a client reports them from inside a poll. A
blocking call can be made to hang (``hang_next``): it then runs under the adapters' own deadline
(:class:`worker.transport.deadline.CallGuard`) and blocks until :meth:`FakeSink.release`, as a
librdkafka call that ignores its timeout does. A member can be held wedged (:meth:`FakeSource.hold`:
"rebalancing" for good, or "stable but orphaned" with a partition no member owns), and
:class:`FakeAdmin` answers for the group as its coordinator would (lag, committed offsets,
describe-groups). The broker tests of the same paths run on the real broker (tests/integration,
tests/faults).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from worker.batch.records import OutRecord
from worker.errors import (
    KafkaCallStuckError,
    ProducerFencedError,
    ProducerStuckError,
    TransactionAbortedError,
    TransportError,
)
from worker.transport import (
    AssignmentChange,
    GroupDescription,
    GroupState,
    GroupToken,
    Membership,
    Offsets,
    Polled,
    Span,
    TopicPartition,
)
from worker.transport.deadline import CallGuard
from worker.transport.membership import MembershipClock


class Hangs:
    """Calls to hang, by name, each the given number of times; released all at once."""

    def __init__(self, client: str, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.next: dict[str, int] = {}
        self.hung: list[str] = []  # every call that hung, in order
        self._guard = CallGuard(client)
        self._client = client
        self._released = threading.Event()

    def __call__(self, name: str) -> None:
        """If ``name`` is to hang: block in it past the deadline (raises
        :class:`worker.errors.KafkaCallStuckError`); the hung call returns, having done
        nothing, once released."""
        left = self.next.get(name, 0)
        if not left:
            return
        self.next[name] = left - 1
        self.hung.append(name)
        released = self._released
        self._guard.run(released.wait, name, self.deadline_s)

    def renew(self) -> None:
        """The client was replaced: a guard of its own, as an adapter's new client gets."""
        self._guard.close()
        self._guard = CallGuard(self._client)

    def release(self) -> None:
        self._released.set()


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None = None
    timestamp: int = -1  # ms since the epoch (CreateTime), -1: none, as kafka-python's


def _now_ms() -> int:
    return int(time.time() * 1000)


_topic_ids = count(1)


@dataclass
class Log:
    """The broker: input partitions, the group's committed offsets, the output topics."""

    topic: str
    partitions: dict[int, list[Rec]] = field(default_factory=dict)
    committed: Offsets = field(default_factory=dict)
    published: dict[str, list[OutRecord]] = field(default_factory=dict)
    commits: list[Offsets] = field(default_factory=list)
    members: dict[str, frozenset[TopicPartition]] = field(default_factory=dict)  # the group
    topic_id: str | None = field(default_factory=lambda: f"id-{next(_topic_ids)}")

    def append(
        self, partition: int, values: Sequence[bytes], timestamp_ms: int | None = None
    ) -> None:
        """Records as a producer sends them: each stamped with its CreateTime, ``timestamp_ms``
        or now."""
        part = self.partitions.setdefault(partition, [])
        ms = _now_ms() if timestamp_ms is None else timestamp_ms
        for v in values:
            part.append(Rec(self.topic, partition, len(part), None, v, None, ms))

    def delete(self) -> None:
        """The input topic is deleted: its records and the group's offsets on it go (as the
        coordinator drops a deleted topic's offsets); a source polls nothing from it."""
        self.topic_id = None
        self.partitions.clear()
        self.committed.clear()

    def create(self, n_partitions: int) -> None:
        """The input topic is created (again: under a new id), empty."""
        self.topic_id = f"id-{next(_topic_ids)}"
        self.partitions = {p: [] for p in range(n_partitions)}

    def grow(self, n_partitions: int) -> None:
        """The input topic grows to ``n_partitions`` (a subscribed source is assigned the new
        ones at its next poll, as after a metadata refresh)."""
        for p in range(n_partitions):
            self.partitions.setdefault(p, [])

    def publish(self, topic: str, records: Sequence[OutRecord]) -> None:
        self.published.setdefault(topic, []).extend(records)
        if topic == self.topic:  # sent to the input topic: read back, headers and all
            part = self.partitions.setdefault(0, [])
            ms = _now_ms()
            for r in records:
                part.append(Rec(topic, 0, len(part), r.key, r.value, list(r.headers), ms))

    def commit(self, offsets: Offsets) -> None:
        self.commits.append(dict(offsets))
        for tp, offset in offsets.items():
            self.committed[tp] = max(offset, self.committed.get(tp, 0))


_member_ids = count(1)


class FakeSource:
    """A consumer holding every partition of ``log`` (until a test rebalances it)."""

    def __init__(self, log: Log, on_commit: Callable[[Offsets], None] | None = None) -> None:
        self.log = log
        self.member_id = f"fake-{next(_member_ids)}"
        self.assigned = {TopicPartition(log.topic, p) for p in log.partitions}
        self.n_partitions = len(log.partitions)  # as this member's metadata knows the topic
        self.held: str | None = None  # "rebalancing" or "orphaned": wedged (hold())
        self.sticky = False  # the wedge survives a soft reset (only a new consumer clears it)
        self.n_resets = 0
        self._rejoining = False
        self.position: Offsets = {tp: log.committed.get(tp, 0) for tp in self.assigned}
        self.epoch = 1
        self.stable = True
        self.on_commit = on_commit
        self.fail_next_polls = 0
        self.refuse_next: dict[str, int] = {}  # "commit", "seek", "seek_to_committed": refused
        self.on_poll: Callable[[FakeSource], None] | None = None  # runs inside each poll
        self._changes: list[AssignmentChange] = []
        self.n_polls = 0
        self.refused_commits: list[TopicPartition] = []
        self._before_revoke: Callable[[], None] = lambda: None
        self._before_lost: Callable[[], None] = lambda: None
        self.clock = MembershipClock()  # a test may give it its own clock
        self.hangs = Hangs("consumer", deadline_s=0.2)  # commit (waiting), close
        self._in_group()

    def _in_group(self) -> None:
        self.log.members[self.member_id] = frozenset(self.assigned)

    # -- what a test does --------------------------------------------------------------------

    def hold(self, wedge: str, sticky: bool = False) -> None:
        """Wedge this member: "rebalancing" (its partitions revoked, never assigned again, the
        group evicts it) or "orphaned" (stable, its last partition taken away and owned by no
        member, as the group's coordinator tells). ``sticky``: a soft reset does not help."""
        if wedge not in ("rebalancing", "orphaned"):
            raise ValueError(wedge)
        self.held, self.sticky = wedge, sticky
        self._wedge()

    def _wedge(self) -> None:
        if self.held == "rebalancing":  # its partitions lost, as when the session expires
            self._before_lost()
            revoked = tuple(sorted(self.assigned))
            self.stable = False
            self.assigned = set()
            self.log.members.pop(self.member_id, None)
            self._changes.append(AssignmentChange(revoked, None))
        else:  # orphaned: keeps all but its last partition; that one no member owns
            everything = sorted(TopicPartition(self.log.topic, p) for p in self.log.partitions)
            kept = set(everything[:-1])
            self._before_revoke()
            self._changes.append(AssignmentChange(tuple(sorted(self.assigned - kept)), None))
            self.assigned = kept
            self.stable = True
            self.epoch += 1
            self._in_group()
            self._changes.append(AssignmentChange((), tuple(sorted(kept))))

    def rebalance(self, assignment: set[TopicPartition]) -> None:
        """What a client reports from inside a poll: revoked, then the new assignment."""
        revoked = tuple(sorted(self.assigned))
        self._before_revoke()
        self._changes.append(AssignmentChange(revoked, None))
        self.assigned = set(assignment)
        self.epoch += 1
        for tp in self.assigned:
            self.position[tp] = self.log.committed.get(tp, 0)
        self._changes.append(AssignmentChange((), tuple(sorted(self.assigned))))
        self._in_group()

    # -- Source --------------------------------------------------------------------------------

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        self.n_polls += 1
        if self._rejoining:  # the group answers the join at this poll
            self._rejoining = False
            if self.held is not None:
                self._wedge()
            else:
                everything = {TopicPartition(self.log.topic, p) for p in self.log.partitions}
                self.stable = True
                self.rebalance(everything)
                self._in_group()
        if self.on_poll is not None:
            self.on_poll(self)
        if self.fail_next_polls:
            self.fail_next_polls -= 1
            raise TransportError("injected: polling failed")
        if len(self.log.partitions) != self.n_partitions:  # grown or gone: the group rebalances
            grown = len(self.log.partitions) > self.n_partitions
            self.n_partitions = len(self.log.partitions)
            existing = {TopicPartition(self.log.topic, p) for p in self.log.partitions}
            self.rebalance(self.assigned | existing if grown else self.assigned & existing)
        records: list[Any] = []
        span: Span = {}
        for tp in sorted(self.assigned):
            part = self.log.partitions.get(tp.partition, [])
            start = self.position[tp]
            taken = part[start : start + max_records - len(records)]
            if taken:
                records.extend(taken)
                span[tp] = (taken[0].offset, taken[-1].offset)
                self.position[tp] = taken[-1].offset + 1
        return Polled(records, span)

    def changes(self) -> list[AssignmentChange]:
        changes, self._changes = self._changes, []
        return changes

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.assigned)

    def group_token(self) -> GroupToken | None:
        return GroupToken(self.epoch, {"epoch": self.epoch}) if self.stable else None

    def membership(self) -> Membership:
        if not self.stable:
            state = GroupState.REBALANCING
        else:
            state = GroupState.STABLE if self.assigned else GroupState.UNASSIGNED
        return self.clock.observe(state, self.epoch, len(self.assigned), self.member_id)

    def reset(self) -> None:
        """Leave the group (every partition revoked) and join again at the next poll."""
        self.n_resets += 1
        revoked = tuple(sorted(self.assigned))
        self.assigned = set()
        self.stable = False
        self.epoch += 1
        self.log.members.pop(self.member_id, None)
        self._changes.append(AssignmentChange(revoked, None))
        if not self.sticky:
            self.held = None
        self._rejoining = True

    def before_revoke(self, commit: Callable[[], None], abort: Callable[[], None]) -> None:
        self._before_revoke, self._before_lost = commit, abort

    def _refused(self, call: str) -> None:
        if self.refuse_next.get(call, 0):
            self.refuse_next[call] -= 1
            raise TransportError(f"injected: the client refused the {call}")

    def seek(self, offsets: Offsets) -> None:
        self._refused("seek")
        for tp, offset in offsets.items():
            if tp in self.assigned:
                self.position[tp] = offset

    def seek_to_committed(self) -> None:
        self._refused("seek_to_committed")
        for tp in self.assigned:
            self.position[tp] = self.log.committed.get(tp, 0)

    def commit(self, offsets: Offsets, wait: bool) -> None:
        if wait:
            self.hangs("commit")
        self._refused("commit")
        # The group coordinator refuses offsets of partitions this member no longer owns.
        self.refused_commits.extend(tp for tp in offsets if tp not in self.assigned)
        offsets = {tp: o for tp, o in offsets.items() if tp in self.assigned}
        if self.on_commit is not None:
            self.on_commit(offsets)
        self.log.commit(offsets)

    def close(self) -> None:
        self.log.members.pop(self.member_id, None)
        self.hangs("close")


class FakeAdmin:
    """The group's coordinator and the topic's offsets, as :class:`worker.transport.Admin`."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.n_described = 0

    def ensure_topics(self) -> None:
        return None

    def lag(self) -> dict[TopicPartition, int]:
        return {
            TopicPartition(self.log.topic, p): len(records)
            - self.log.committed.get(TopicPartition(self.log.topic, p), 0)
            for p, records in self.log.partitions.items()
        }

    def committed(self) -> Offsets:
        return dict(self.log.committed)

    def topic_id(self) -> str | None:
        return self.log.topic_id

    def describe_group(self) -> GroupDescription:
        self.n_described += 1
        members = dict(self.log.members)
        return GroupDescription("Stable" if members else "Empty", members)

    def close(self) -> None:
        return None


class FakeSink:
    """A producer into ``log``: sends are buffered and published at flush (or at the commit of
    their transaction)."""

    def __init__(self, log: Log, source: FakeSource | None = None) -> None:
        self.log = log
        self.source = source  # exactly_once: transactions commit offsets through its log
        self.buffer: list[tuple[str, list[OutRecord]]] = []
        self.fail_next_flushes = 0
        self.abort_next_transactions = 0
        self.stick_next_transactions = 0
        self.fence_next_transactions = 0
        self.tokens: list[GroupToken | None] = []
        self.n_replaced = 0
        self.n_aborted = 0
        self.n_begun = 0
        self.offsets: Offsets = {}  # added to the open transaction
        # flush, init_transactions, send_offsets_to_transaction, commit_transaction,
        # abort_transaction, close: hung calls pass the deadline, and the producer is stuck
        self.hangs = Hangs("producer", deadline_s=0.2)
        self.stuck: list[int] = []  # the producers left stuck in a call, not yet fenced
        self.fenced: list[int] = []  # stuck producers fenced by a replacement's init
        self.producer_id = 1

    def _blocking(self, name: str) -> None:
        try:
            self.hangs(name)
        except KafkaCallStuckError:
            self.stuck.append(self.producer_id)
            raise

    def send(self, topic: str, records: Sequence[OutRecord]) -> None:
        self.buffer.append((topic, list(records)))

    def flush(self, timeout_s: float) -> None:
        buffer, self.buffer = self.buffer, []
        self._blocking("flush")
        if self.fail_next_flushes:
            self.fail_next_flushes -= 1
            raise TransportError("injected: a send was not acknowledged")
        for topic, records in buffer:
            self.log.publish(topic, records)

    def init_transactions(self) -> None:
        self._blocking("init_transactions")

    def begin_transaction(self) -> None:
        self.buffer = []
        self.offsets = {}
        self.n_begun += 1

    def send_offsets_to_transaction(self, offsets: Offsets, token: GroupToken | None) -> None:
        if not offsets:
            return
        self.tokens.append(token)
        self._blocking("send_offsets_to_transaction")
        if token is None:  # as both adapters: aborted, then said so
            self.abort_transaction(TransactionAbortedError("no membership"))
            raise TransactionAbortedError("no group membership vouches for these")
        self.offsets.update(offsets)

    def abort_transaction(self, cause: Exception) -> None:
        self.buffer = []
        self.offsets = {}
        self._blocking("abort_transaction")
        self.n_aborted += 1

    def commit_transaction(self) -> None:
        buffer, self.buffer = self.buffer, []
        offsets, self.offsets = self.offsets, {}
        self._blocking("commit_transaction")
        if self.fence_next_transactions:
            self.fence_next_transactions -= 1
            raise ProducerFencedError("injected: fenced")
        if self.stick_next_transactions:
            self.stick_next_transactions -= 1
            raise ProducerStuckError("injected: commit_transaction() did not return")
        if self.abort_next_transactions:
            self.abort_next_transactions -= 1
            self.n_aborted += 1
            raise TransactionAbortedError("injected: the coordinator refused the offsets")
        for topic, records in buffer:
            self.log.publish(topic, records)
        self.log.commit(offsets)

    def replace(self) -> None:
        """A new producer; its init fences the stuck ones (held until then, as the adapters
        hold theirs)."""
        self.n_replaced += 1
        self.buffer = []
        self.hangs.renew()
        self.producer_id += 1
        self.init_transactions()
        self.fenced.extend(self.stuck)
        self.stuck = []

    def close(self, timeout_s: float) -> None:
        self._blocking("close")

    def release(self) -> None:
        """Let every hung call return (a test's clean-up)."""
        self.hangs.release()
