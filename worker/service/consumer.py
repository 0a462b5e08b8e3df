"""The input consumer the loop and the delivery hold, which the membership watchdog may rebuild.

:class:`RenewableSource` is a :class:`~worker.transport.Source` over the transport's current
one: :meth:`RenewableSource.renew` closes that one and builds a new one in its place, reporting
every partition it held as revoked (the loop drops its unpublished batches and follows the new
assignment), so nothing that holds the source needs to know it was replaced. The watchdog
renews it, and so does the loop when the consumer cannot read its committed offsets
(:meth:`RenewableSource.rebuild`).

:func:`tend` is the membership's turn between batches: the source's membership to the metrics,
``/readyz`` and the :class:`~.watchdog.Watchdog`, and the watchdog's action taken through the
loop (:meth:`~.loop.Loop.revoke_all`): a soft reset, or a new consumer.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from worker.delivery import call_stuck
from worker.errors import KafkaCallStuckError, StartupError, TransportError
from worker.metrics import Metrics
from worker.service.health import Health
from worker.service.input_topic import InputTopicWatch, TopicChange
from worker.service.loop import Loop
from worker.service.watchdog import Action, Watchdog, Wedge
from worker.transport import (
    AssignmentChange,
    GroupState,
    GroupToken,
    Membership,
    Offsets,
    Polled,
    Source,
    TopicPartition,
)
from worker.transport.membership import MembershipClock

__all__ = ["RenewableSource", "counted_reset", "tend"]

log = logging.getLogger("streamfuse.watchdog")


class RenewableSource:
    """:class:`~worker.transport.Source` delegating to ``make()``'s source, renewed on demand."""

    def __init__(
        self,
        make: Callable[[], Source],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make = make
        self.metrics = metrics
        self.inner: Source | None = make()
        self._hooks: tuple[Callable[[], None], Callable[[], None]] | None = None
        self._changes: list[AssignmentChange] = []
        self._closed_clock = MembershipClock(clock)  # while no consumer could be built
        self.n_renewed = 0

    def renew(self) -> None:
        """Close the consumer and build a new one (its partitions reported revoked); when the
        new one cannot be built the source stays closed (polls fail) until the next renew."""
        old, self.inner = self.inner, None
        if old is not None:
            revoked = tuple(sorted(old.assignment()))
            self._changes.append(AssignmentChange(revoked, None))
            try:
                old.close()
            except KafkaCallStuckError as exc:
                call_stuck(exc, self.metrics, "building a new consumer")
            except Exception as exc:  # a wedged client may fail to close: it is dropped anyway
                log.warning("closing the old consumer failed (%s); building a new one", exc)
        new = self._make()
        if self._hooks is not None:
            new.before_revoke(*self._hooks)
        self.inner = new
        self.n_renewed += 1

    def rebuild(self) -> None:
        """A new consumer because this one cannot read its committed offsets (the loop's
        :meth:`~.loop.Loop.rewind_to_committed`), counted as ``committed_unreadable``. If the
        new one cannot be built either, the source stays closed: the watchdog sees a member
        rebalancing and renews it again at its next step."""
        counted_reset(self.renew, "committed_unreadable", self.metrics)

    def _source(self) -> Source:
        if self.inner is None:
            raise TransportError("the input consumer is being rebuilt")
        return self.inner

    # -- Source ------------------------------------------------------------------------------

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        return self._source().poll(timeout_s, max_records)

    def changes(self) -> list[AssignmentChange]:
        queued, self._changes = self._changes, []
        return queued + (self.inner.changes() if self.inner is not None else [])

    def assignment(self) -> frozenset[TopicPartition]:
        return self.inner.assignment() if self.inner is not None else frozenset()

    def group_token(self) -> GroupToken | None:
        return self.inner.group_token() if self.inner is not None else None

    def membership(self) -> Membership:
        if self.inner is None:
            return self._closed_clock.observe(GroupState.REBALANCING, 0, 0)
        return self.inner.membership()

    def reset(self) -> None:
        self._source().reset()

    def seek(self, offsets: Offsets) -> None:
        if self.inner is not None:
            self.inner.seek(offsets)

    def seek_to_committed(self) -> None:
        if self.inner is not None:
            self.inner.seek_to_committed()

    def before_revoke(self, commit: Callable[[], None], abort: Callable[[], None]) -> None:
        self._source().before_revoke(commit, abort)
        self._hooks = (commit, abort)

    def commit(self, offsets: Offsets, wait: bool) -> None:
        self._source().commit(offsets, wait)

    def close(self) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.close()


def _from_the_start(source: RenewableSource) -> None:
    """The input topic was created again: the group's offsets on the partitions this member
    holds go back to 0 (the old positions may have skipped records), then it joins again."""
    held = {tp: 0 for tp in source.assignment()}
    try:
        if held:
            source.commit(held, wait=True)
    except TransportError as exc:  # joining again still drops the positions
        log.error("setting the offsets back to the start failed (%s)", exc)
    source.reset()


def tend(
    source: RenewableSource,
    watchdog: Watchdog,
    loop: Loop | None,
    metrics: Metrics,
    health: Health | None = None,
    topic: InputTopicWatch | None = None,
) -> Action | None:
    """Report the membership; take the watchdog's action, if any (returned), or reset the
    consumer after the input topic was created again (``topic``)."""
    m = source.membership()
    age = m.age_s()
    metrics.set_membership(m.state.value, age, m.generation, m.n_partitions)
    if health is not None:
        health.membership(m.state.value, age)
    took = watchdog.observe(m, source.assignment())
    if took is not None:
        metrics.rebalance_duration.observe(took)
    step = watchdog.check()
    if loop is None:
        return None
    reset: Callable[[], None]
    if step is not None:
        action, wedge = step
        reset = source.reset if action is Action.SOFT_RESET else source.renew
    else:
        change = topic.take_reset() if topic is not None else None
        if change is None:
            return None
        action, wedge = Action.SOFT_RESET, Wedge(f"topic_{change.value}", "")
        reset = source.reset
        if change is TopicChange.RECREATED:
            reset = functools.partial(_from_the_start, source)
    counted_reset(functools.partial(loop.revoke_all, reset), wedge.reason, metrics)
    # the rejoin may complete within the next gather: its rebalance is timed from now
    took = watchdog.observe(source.membership(), source.assignment())
    if took is not None:  # a new consumer already in the group
        metrics.rebalance_duration.observe(took)
    return action


def counted_reset(reset: Callable[[], None], reason: str, metrics: Metrics | None) -> None:
    """``reset`` the consumer, counted in ``streamfuse_consumer_resets_total{reason}``. If it
    fails (leaving the group stuck, or no new consumer built), the source stays closed and the
    watchdog's next step sees a member rebalancing and escalates."""
    if metrics is not None:
        metrics.consumer_resets.labels(reason).inc()
    try:
        reset()
    except KafkaCallStuckError as exc:
        call_stuck(exc, metrics, "a new consumer at the watchdog's next step")
    except (TransportError, StartupError) as exc:
        log.warning("resetting the consumer failed (%s); the watchdog tries again", exc)
