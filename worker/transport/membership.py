"""A member's place in its consumer group, as each :class:`~worker.transport.base.Source`
reports it: state, generation, partitions, and since when (issue 22).

:class:`MembershipClock` turns what a client says now into a :class:`Membership` whose
``since`` is when that state was first seen, so a member held in "rebalancing" shows its age
to the metrics and to ``/readyz``. Nothing here imports a Kafka client.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["GroupState", "Membership", "MembershipClock"]


class GroupState(enum.Enum):
    STABLE = "stable"  # in the group, partitions assigned
    REBALANCING = "rebalancing"  # joining, rejoining, or not yet answered
    UNASSIGNED = "unassigned"  # in the group with no partitions (more members than partitions)


@dataclass(frozen=True)
class Membership:
    """``generation``: the group's generation where the client tells it (kafka-python); the
    number of assignments received where it keeps it opaque (librdkafka); 0 before the first.
    ``since``: the :func:`time.monotonic` reading when this state was first seen.
    ``member_id``: the id the coordinator gave this member ("" before it has one)."""

    state: GroupState
    generation: int
    n_partitions: int
    since: float
    member_id: str = ""

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.monotonic() if now is None else now) - self.since)


class MembershipClock:
    """Keeps ``since`` across reports: it moves only when the state changes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: Membership | None = None

    def observe(
        self, state: GroupState, generation: int, n_partitions: int, member_id: str = ""
    ) -> Membership:
        last = self._last
        since = last.since if last is not None and last.state is state else self.clock()
        self._last = Membership(state, max(0, generation), n_partitions, since, member_id)
        return self._last
