"""An in-memory Kafka for unit tests of the loop (httpx's ``MockTransport`` is the model).

:class:`Log` holds partitions of records, committed offsets and what was published (committed
transactions only, as a ``read_committed`` reader sees them). :class:`FakeSource` and
:class:`FakeSink` implement the transport protocols over it, with failures injected by the test
(``fail_next_*``) and rebalances queued the way a client reports them from inside a poll. A
blocking call can be made to hang (``hang_next``): it then runs under the adapters' own deadline
(:class:`worker.transport.deadline.CallGuard`) and blocks until :meth:`FakeSink.release`, as a
librdkafka call that ignores its timeout does. The broker tests of the same paths run on the
real broker (tests/integration, tests/faults).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
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


@dataclass
class Log:
    """The broker: input partitions, the group's committed offsets, the output topics."""

    topic: str
    partitions: dict[int, list[Rec]] = field(default_factory=dict)
    committed: Offsets = field(default_factory=dict)
    published: dict[str, list[OutRecord]] = field(default_factory=dict)
    commits: list[Offsets] = field(default_factory=list)

    def append(self, partition: int, values: Sequence[bytes]) -> None:
        part = self.partitions.setdefault(partition, [])
        for v in values:
            part.append(Rec(self.topic, partition, len(part), None, v))

    def publish(self, topic: str, records: Sequence[OutRecord]) -> None:
        self.published.setdefault(topic, []).extend(records)
        if topic == self.topic:  # sent to the input topic: read back, headers and all
            part = self.partitions.setdefault(0, [])
            for r in records:
                part.append(Rec(topic, 0, len(part), r.key, r.value, list(r.headers)))

    def commit(self, offsets: Offsets) -> None:
        self.commits.append(dict(offsets))
        for tp, offset in offsets.items():
            self.committed[tp] = max(offset, self.committed.get(tp, 0))


class FakeSource:
    """A consumer holding every partition of ``log`` (until a test rebalances it)."""

    def __init__(self, log: Log, on_commit: Callable[[Offsets], None] | None = None) -> None:
        self.log = log
        self.assigned = {TopicPartition(log.topic, p) for p in log.partitions}
        self.position: Offsets = {tp: log.committed.get(tp, 0) for tp in self.assigned}
        self.epoch = 1
        self.stable = True
        self.on_commit = on_commit
        self.fail_next_polls = 0
        self.on_poll: Callable[[FakeSource], None] | None = None  # runs inside each poll
        self._changes: list[AssignmentChange] = []
        self.n_polls = 0
        self.refused_commits: list[TopicPartition] = []
        self._before_revoke: Callable[[], None] = lambda: None
        self.clock = MembershipClock()  # a test may give it its own clock
        self.hangs = Hangs("consumer", deadline_s=0.2)  # commit (waiting), close

    # -- what a test does --------------------------------------------------------------------

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

    # -- Source --------------------------------------------------------------------------------

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        self.n_polls += 1
        if self.on_poll is not None:
            self.on_poll(self)
        if self.fail_next_polls:
            self.fail_next_polls -= 1
            raise TransportError("injected: polling failed")
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
        return self.clock.observe(state, self.epoch, len(self.assigned))

    def before_revoke(self, commit: Callable[[], None], abort: Callable[[], None]) -> None:
        self._before_revoke = commit

    def seek(self, offsets: Offsets) -> None:
        for tp, offset in offsets.items():
            if tp in self.assigned:
                self.position[tp] = offset

    def seek_to_committed(self) -> None:
        for tp in self.assigned:
            self.position[tp] = self.log.committed.get(tp, 0)

    def commit(self, offsets: Offsets, wait: bool) -> None:
        if wait:
            self.hangs("commit")
        # The group coordinator refuses offsets of partitions this member no longer owns.
        self.refused_commits.extend(tp for tp in offsets if tp not in self.assigned)
        offsets = {tp: o for tp, o in offsets.items() if tp in self.assigned}
        if self.on_commit is not None:
            self.on_commit(offsets)
        self.log.commit(offsets)

    def close(self) -> None:
        self.hangs("close")


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

    @contextmanager
    def transaction(self, offsets: Offsets, token: GroupToken | None) -> Iterator[None]:
        self.begin_transaction()
        try:
            yield
        except (ProducerStuckError, KafkaCallStuckError):
            raise
        except TransportError as exc:  # as both adapters: aborted, then said so
            self.abort_transaction(exc)
            raise TransactionAbortedError(f"transaction failed ({exc})") from exc
        self.commit_transaction(offsets, token)

    def begin_transaction(self) -> None:
        self.buffer = []
        self.n_begun += 1

    def abort_transaction(self, cause: Exception, timeout_s: float | None = None) -> None:
        self.buffer = []
        self._blocking("abort_transaction")
        self.n_aborted += 1

    def commit_transaction(self, offsets: Offsets, token: GroupToken | None) -> None:
        buffer, self.buffer = self.buffer, []
        self.tokens.append(token)
        if offsets:
            self._blocking("send_offsets_to_transaction")
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
