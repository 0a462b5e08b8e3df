"""The membership watchdog: notice a wedged consumer group membership and act on it.

Two wedges, both invisible to the loop's heartbeat (it keeps turning, serving nothing):

- **rebalancing** longer than ``kafka.rebalance_stuck_s`` (kafka-python's lost JoinGroup answer
  leaves a member there for good, heartbeats off);
- **orphaned**: stable (or unassigned) while partitions of the input topic that are not this
  member's have lag whose committed offsets have not moved for that bound, and the group's
  coordinator confirms it (describe-groups): this member is missing from the group, or such a
  partition is owned by no one. A partition another member owns is that member's business.

The evidence of the second is gathered off the loop, on the lag monitor's thread
(:meth:`Watchdog.gather`, with its admin); the verdict is read on the loop's thread
(:meth:`Watchdog.check`, between batches), which gets back the :class:`Action` to take, in
escalating order: a WARNING naming state, generation, age, assignment and lag together with a
soft reset (leave and join again); if the member is wedged again within the bound, the consumer
rebuilt (and rebuilt again after that); an episode ends once the member has been healthy for
twice the bound. After :data:`MAX_RESETS` resets within :data:`RESET_WINDOW_S`,
:meth:`Watchdog.failing` names the reason (``/healthz`` fails: restart the process).

Pure logic over an injectable clock; nothing here imports a Kafka client.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from worker.transport import Admin, GroupState, Membership, Offsets, TopicPartition

__all__ = ["MAX_RESETS", "RESET_WINDOW_S", "Action", "Watchdog", "Wedge"]

log = logging.getLogger("streamfuse.watchdog")

MAX_RESETS = 3  # resets within RESET_WINDOW_S after which /healthz fails
RESET_WINDOW_S = 600.0

Clock = Callable[[], float]


class Action(enum.Enum):
    SOFT_RESET = "soft reset"  # unsubscribe and subscribe again
    REBUILD = "rebuild"  # close the consumer and build a new one


@dataclass(frozen=True)
class Wedge:
    """Why the membership looks wedged: ``reason`` is a label of
    ``streamfuse_consumer_resets_total`` (``rebalancing``, ``orphaned``)."""

    reason: str
    detail: str


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(tps)) or "none"


class Watchdog:
    """Decides; the worker acts (:meth:`check` returns the action, once per escalation step).

    ``stuck_s``: ``kafka.rebalance_stuck_s``. Thread use: :meth:`observe` and :meth:`check` on
    the loop's thread, :meth:`gather` on the lag thread, :meth:`wedged` and :meth:`failing`
    on the metrics server's; shared fields are replaced whole, under a lock where read twice.
    """

    def __init__(self, stuck_s: float, clock: Clock = time.monotonic) -> None:
        self.stuck_s = stuck_s
        self.clock = clock
        self._lock = threading.Lock()
        self._membership: Membership | None = None
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._lag: dict[TopicPartition, int] = {}
        # partitions not ours with lag: their committed offset and since when it has not moved
        self._still: dict[TopicPartition, tuple[int, float]] = {}
        self._orphaned: Wedge | None = None  # confirmed by the coordinator, until acted on
        self._wedge: Wedge | None = None  # the wedge seen at the last check
        self._acted_at: float | None = None  # the episode's last action
        self._last_action: Action | None = None
        self._healthy_since: float | None = None
        self._resets: deque[tuple[float, str]] = deque()
        self._n_actions = 0  # evidence gathered before an action is dropped after it
        self._settled: bool | None = None  # None: not in the group yet (start-up)
        self._left_at: float | None = None  # when this member last left a settled group

    # -- the loop's thread -------------------------------------------------------------------

    def observe(
        self, membership: Membership, assignment: frozenset[TopicPartition]
    ) -> float | None:
        """This member's membership now; returns how long a rebalance lasted when one just
        ended (from leaving stable to stable again; unassigned counts as settled), else None."""
        with self._lock:
            self._membership = membership
            self._assignment = assignment
        settled = membership.state is not GroupState.REBALANCING
        was, self._settled = self._settled, settled
        if was and not settled:
            self._left_at = membership.since
        elif was is False and settled and self._left_at is not None:
            left, self._left_at = self._left_at, None
            return max(0.0, membership.since - left)
        return None

    def check(self) -> tuple[Action, Wedge] | None:
        """The action to take now (and why), or None: the WARNING is logged here."""
        now = self.clock()
        wedge = self._find_wedge(now)
        self._wedge = wedge
        if wedge is None:
            if self._healthy_since is None:
                self._healthy_since = now
            if self._acted_at is not None and now - self._healthy_since >= 2 * self.stuck_s:
                log.info("the consumer group membership is healthy again: the watchdog stands by")
                self._acted_at = self._last_action = None
            return None
        self._healthy_since = None
        action = Action.SOFT_RESET if self._last_action is None else Action.REBUILD
        self._acted_at, self._last_action = now, action
        with self._lock:
            self._orphaned = None
            self._still.clear()  # fresh evidence after the action
            self._n_actions += 1
            self._resets.append((now, wedge.reason))
        log.warning(
            "the consumer group membership is wedged: %s; %s (%s)",
            self.describe(now),
            "leaving the group and joining again"
            if action is Action.SOFT_RESET
            else "the last reset did not help: rebuilding the consumer",
            wedge.detail,
        )
        return action, wedge

    def describe(self, now: float | None = None) -> str:
        """State, generation, age, assignment and lag, for the WARNING."""
        now = self.clock() if now is None else now
        with self._lock:
            m, assignment, lag = self._membership, self._assignment, dict(self._lag)
        if m is None:
            return "no membership reported yet"
        lagging = {tp: n for tp, n in sorted(lag.items()) if n}
        lags = ", ".join(f"{tp.topic}:{tp.partition}={n}" for tp, n in lagging.items()) or "none"
        return (
            f"state {m.state.value}, generation {m.generation}, for {m.age_s(now):.0f} s, "
            f"assigned {_names(assignment)}, lag {lags}"
        )

    def _find_wedge(self, now: float) -> Wedge | None:
        with self._lock:
            m, orphaned = self._membership, self._orphaned
        if m is None:
            return None
        if m.state is GroupState.REBALANCING:
            began = max(m.since, self._acted_at or m.since)  # a reset starts the clock again
            if now - began > self.stuck_s:
                return Wedge(
                    "rebalancing",
                    f"rebalancing for {now - began:.0f} s (bound {self.stuck_s:g} s)",
                )
            return None
        return orphaned

    # -- the lag thread --------------------------------------------------------------------------

    def gather(self, admin: Admin, lag: dict[TopicPartition, int]) -> None:
        """After each lag refresh: track the lagging partitions that are not ours, and when one
        has not moved for the bound, ask the coordinator whether it is orphaned."""
        now = self.clock()
        with self._lock:
            self._lag = dict(lag)
            m, ours, n_actions = self._membership, self._assignment, self._n_actions
        if m is None or m.state is GroupState.REBALANCING:
            self._settle(n_actions, None, clear=True)
            return
        foreign = {tp for tp, n in lag.items() if n > 0 and tp not in ours}
        if not foreign:
            self._settle(n_actions, None, clear=True)
            return
        stale = self._track(foreign, admin.committed(), now)
        if not stale:
            self._settle(n_actions, None)
            return
        group = admin.describe_group()
        missing = bool(m.member_id) and m.member_id not in group.members
        unowned = stale - group.owned()
        if not missing and not unowned:  # another member's partitions: its own business
            self._settle(n_actions, None)
            return
        why = (
            f"the coordinator does not list this member ({m.member_id}) in the group"
            if missing
            else f"no member owns {_names(unowned)}"
        )
        detail = (
            f"stable but orphaned: {why}; group {group.state}, {len(group.members)} members; "
            f"committed offsets of {_names(stale)} unmoved for {self.stuck_s:g} s"
        )
        self._settle(n_actions, Wedge("orphaned", detail))

    def _settle(self, n_actions: int, orphaned: Wedge | None, clear: bool = False) -> None:
        """The verdict of one gather, unless a reset came since its evidence was read (that
        evidence no longer counts); ``clear``: nothing is lagging, forget what was tracked."""
        with self._lock:
            if self._n_actions != n_actions:
                return
            self._orphaned = orphaned
            if clear:
                self._still.clear()

    def _track(
        self, foreign: set[TopicPartition], committed: Offsets, now: float
    ) -> set[TopicPartition]:
        """Partitions among ``foreign`` whose committed offset has not moved for the bound."""
        with self._lock:
            still = {}
            for tp in foreign:
                offset = committed.get(tp, -1)
                seen = self._still.get(tp)
                still[tp] = seen if seen is not None and seen[0] == offset else (offset, now)
            self._still = still
        return {tp for tp, (_, since) in still.items() if now - since >= self.stuck_s}

    # -- the metrics server's thread ----------------------------------------------------------

    def wedged(self) -> str | None:
        """Why the membership is wedged now (``/readyz``), or None."""
        wedge = self._wedge
        return None if wedge is None else wedge.detail

    def failing(self) -> str | None:
        """Why ``/healthz`` fails: :data:`MAX_RESETS` resets within :data:`RESET_WINDOW_S`."""
        now = self.clock()
        with self._lock:
            while self._resets and now - self._resets[0][0] > RESET_WINDOW_S:
                self._resets.popleft()
            recent = list(self._resets)
        if len(recent) < MAX_RESETS:
            return None
        reasons = ", ".join(sorted({reason for _, reason in recent}))
        return (
            f"the consumer was reset {len(recent)} times in {RESET_WINDOW_S / 60:g} minutes "
            f"({reasons}): its group membership keeps wedging; restart the process"
        )
