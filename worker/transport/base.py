"""The transport seam: what the worker needs of a Kafka client, in the project's own types.

The loop (:mod:`worker.service.loop`) and the delivery guarantees (:mod:`worker.delivery`) speak
only to these protocols; an adapter package per client library (:mod:`.kafka_python`)
implements them and turns the client's errors into :mod:`worker.errors` types. The shapes fit
both kafka-python (rebalance callbacks on its I/O thread, send futures, record attributes,
group metadata with member state) and librdkafka (rebalance callbacks inside the caller's poll,
delivery callbacks plus ``flush()``, message accessor methods, opaque group metadata): whatever
a client does differently stays inside its adapter.

Nothing here imports a Kafka client.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from worker.batch.records import InRecord, OutRecord
from worker.transport.membership import GroupState, Membership

__all__ = [
    "Admin",
    "AssignmentChange",
    "GroupDescription",
    "GroupState",
    "GroupToken",
    "LabelsReader",
    "Membership",
    "Offsets",
    "Polled",
    "Sink",
    "Source",
    "Span",
    "TopicPartition",
    "merge_span",
]


class TopicPartition(NamedTuple):
    topic: str
    partition: int


Span = dict[TopicPartition, tuple[int, int]]
"""Per partition, the first and last offset of a batch's records."""

Offsets = dict[TopicPartition, int]
"""Per partition, the next offset to read (what a commit stores)."""


@dataclass(frozen=True)
class Polled:
    """What one :meth:`Source.poll` returned: records in partition order and their span."""

    records: list[InRecord] = field(default_factory=list)
    span: Span = field(default_factory=dict)


@dataclass(frozen=True)
class AssignmentChange:
    """One rebalance event: partitions taken away, and the whole assignment after it."""

    revoked: tuple[TopicPartition, ...]
    assignment: tuple[TopicPartition, ...] | None  # None: not known yet (only revoked so far)


@dataclass(frozen=True)
class GroupToken:
    """The consumer group membership a batch was read under (exactly_once, KIP-447).

    ``epoch`` identifies the membership (kafka-python: generation and member id); two tokens
    vouch for the same membership when their epochs are equal. ``native`` is the client's own
    group metadata, handed back to :meth:`Sink.send_offsets_to_transaction` untouched.
    """

    epoch: Hashable
    native: Any = field(compare=False, repr=False)


@dataclass(frozen=True)
class GroupDescription:
    """The consumer group as its coordinator describes it (the describe-groups call).

    ``state``: the coordinator's name for it (``Stable``, ``PreparingRebalance``,
    ``CompletingRebalance``, ``Empty``, ``Dead``); ``members``: each member id with the input
    topic's partitions assigned to it."""

    state: str
    members: dict[str, frozenset[TopicPartition]] = field(default_factory=dict)

    def owned(self) -> frozenset[TopicPartition]:
        """Every partition some member holds."""
        return frozenset(tp for tps in self.members.values() for tp in tps)


def merge_span(span: Span, more: Span) -> None:
    """Widen ``span`` in place to cover ``more`` (first offsets kept, last offsets advanced)."""
    for tp, (first, last) in more.items():
        old = span.get(tp)
        span[tp] = (first, last) if old is None else (min(old[0], first), max(old[1], last))


class Source(Protocol):
    """The input topic's consumer, subscribed to the group."""

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        """Records fetched within ``timeout_s``; raises :class:`worker.errors.TransportError`
        when the client could not poll (the broker went away; the client reconnects)."""

    def changes(self) -> list[AssignmentChange]:
        """Rebalance events since the last call, oldest first (empty when none)."""

    def assignment(self) -> frozenset[TopicPartition]: ...

    def group_token(self) -> GroupToken | None:
        """The current membership, or None when this member is not in a stable group now."""

    def membership(self) -> Membership:
        """This member's group state, generation and partitions as the client reports them
        now, with when that state began; never blocks on the broker."""

    def reset(self) -> None:
        """Leave the group and join it again (unsubscribe, subscribe): every partition is
        revoked (reported by :meth:`changes`) and the group assigns them anew; the loop treats
        it as a revoke of everything (the membership watchdog's soft reset)."""

    def seek(self, offsets: Offsets) -> None:
        """Rewind (or advance) the given partitions; partitions not assigned are ignored.
        Raises :class:`worker.errors.TransportError` when the client refuses a seek."""

    def seek_to_committed(self) -> None:
        """Every assigned partition back to its committed offset (the beginning when none);
        raises :class:`worker.errors.TransportError` when the offsets cannot be read."""

    def before_revoke(self, commit: Callable[[], None], abort: Callable[[], None]) -> None:
        """Run ``commit`` before partitions are revoked and ``abort`` when they are lost, on the
        loop's thread inside :meth:`poll` (librdkafka's rebalance callbacks). kafka-python
        rebalances on its own I/O thread and refuses (:class:`NotImplementedError`)."""

    def commit(self, offsets: Offsets, wait: bool) -> None:
        """Store offsets for the group: asynchronously (a failure the broker answers later is
        logged; a later commit covers it) or waiting for the answer. Raises
        :class:`worker.errors.TransportError` when the client refuses the commit (either way)
        or, waiting, the broker does; :class:`worker.errors.KafkaCallStuckError` past
        ``kafka.watchdog_s``."""

    def close(self) -> None: ...


class Sink(Protocol):
    """The producer of predictions and dead letters."""

    def send(self, topic: str, records: Sequence[OutRecord]) -> None:
        """Queue records; their delivery is checked by :meth:`flush`."""

    def flush(self, timeout_s: float) -> None:
        """Wait for every queued record; raises :class:`worker.errors.TransportError` when any
        record since the last flush was not delivered, and
        :class:`worker.errors.KafkaCallStuckError` when the flush did not return within its
        deadline (replace the producer)."""

    def init_transactions(self) -> None: ...

    # A transaction in steps (one batch's, or one spanning several: kafka.transaction_interval_ms).
    # Each blocking step runs under a deadline; any step may raise
    # :class:`worker.errors.ProducerFencedError` (another instance owns the transactional id:
    # fatal), :class:`worker.errors.KafkaCallStuckError` (a call did not return within its
    # deadline) or :class:`worker.errors.ProducerStuckError` (the producer is stuck): replace
    # the producer either way, and re-read from committed.

    def begin_transaction(self) -> None:
        """Open a transaction for the sends that follow; raises
        :class:`worker.errors.TransportError` when none could be begun (nothing to abort)."""

    def send_offsets_to_transaction(self, offsets: Offsets, token: GroupToken | None) -> None:
        """Add the consumer ``offsets``, read under the membership ``token``, to the open
        transaction (nothing when empty). On a failure the transaction is aborted and
        :class:`worker.errors.TransactionAbortedError` raised (re-read from committed); so
        without a ``token``."""

    def commit_transaction(self) -> None:
        """Commit what was sent and added since :meth:`begin_transaction`; on a failure it is
        aborted and :class:`worker.errors.TransactionAbortedError` raised."""

    def abort_transaction(self, cause: Exception) -> None:
        """Abort the open transaction (after ``cause``): nothing sent in it is visible to a
        ``read_committed`` reader and its offsets are not committed; raises
        :class:`worker.errors.ProducerStuckError` when the abort fails."""

    def replace(self) -> None:
        """Drop this producer without waiting and build a new one (transactions initialised
        when transactional); raises :class:`worker.errors.TransportError` when the new one is
        not ready yet."""

    def close(self, timeout_s: float) -> None: ...


class LabelsReader(Protocol):
    """Reads the labels topic, following the input assignment (no group, no commits)."""

    def follow(self, partitions: Sequence[int]) -> list[int]:
        """Read these partitions of the labels topic from their end, resolved now; returns
        those the labels topic does not have (the input grew and the labels topic did not:
        the two are no longer co-partitioned), which are not followed."""

    def poll(self, max_records: int) -> list[bytes | None]:
        """Label values already fetched (never waits); [] when nothing is assigned."""

    def close(self) -> None: ...


class Admin(Protocol):
    """Topic checks at start-up, consumer lag for the metrics, and the group as the coordinator
    sees it (the membership watchdog's evidence)."""

    def ensure_topics(self) -> None:
        """Every configured topic exists (created when ``topics.create``), labels
        co-partitioned with the input; raises :class:`worker.errors.ConfigError` otherwise."""

    def lag(self) -> dict[TopicPartition, int]:
        """The group's lag per partition of the input topic (end minus committed offset)."""

    def committed(self) -> Offsets:
        """The group's committed offsets on the input topic (partitions with none left out)."""

    def describe_group(self) -> GroupDescription:
        """The group's state and its members' assignments on the input topic (describe-groups);
        raises :class:`worker.errors.TransportError` when the coordinator did not answer within
        the admin calls' bound."""

    def topic_id(self) -> str | None:
        """The input topic's id as the brokers give it now (a fresh metadata request), or None
        when the topic does not exist: a new id under the same name is a topic deleted and
        created again (KIP-516 topic ids)."""

    def close(self) -> None: ...
