"""The membership watchdog (issue 22): a member held "rebalancing" or "stable but orphaned" is
noticed, warned about, reset (leave and join again), rebuilt when that did not help, and after 3
resets in 10 minutes ``/healthz`` fails; ``/readyz`` is not ready while it is wedged.

Its decisions run on an injected clock; the recoveries run the real loop and delivery on the
in-memory transport (tests/support/fake_transport.py), whose members can be held wedged. The
broker test of a reset on a serving worker is tests/integration/test_consumer_reset.py.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.fake_transport import FakeAdmin, FakeSink, FakeSource, Log
from tests.worker.service.test_loop import (  # noqa: F401  (pipeline and serving are fixtures)
    Clock,
    all_committed,
    filled,
    make_loop,
    never_ahead_of_publishing,
    pipeline,
    published_ids,
    run_until,
    serving,
)
from worker.errors import BrokerUnavailableError, TransportError
from worker.inference.pipeline import Pipeline
from worker.metrics import CONSUMER_RESET_REASONS, Metrics
from worker.service.consumer import RenewableSource, tend
from worker.service.health import Health
from worker.service.watchdog import MAX_RESETS, RESET_WINDOW_S, Action, Watchdog
from worker.transport import GroupState, TopicPartition
from worker.transport.membership import Membership, MembershipClock

STUCK_S = 60.0
TP0, TP1 = TopicPartition("in", 0), TopicPartition("in", 1)


def membership(state: GroupState, since: float, n: int = 0, member: str = "me") -> Membership:
    return Membership(state, 3, n, since, member)


# -- decisions, on a clock -----------------------------------------------------------------------


def test_rebalancing_past_the_bound_warns_and_soft_resets_then_rebuilds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    dog = Watchdog(STUCK_S, clock)
    dog.observe(membership(GroupState.REBALANCING, clock.now), frozenset())
    clock.now += STUCK_S
    assert dog.check() is None and dog.wedged() is None  # at the bound: not yet
    clock.now += 1
    with caplog.at_level(logging.WARNING, logger="streamfuse.watchdog"):
        step = dog.check()
    assert step is not None and step[0] is Action.SOFT_RESET and step[1].reason == "rebalancing"
    warning = caplog.records[-1].getMessage()
    for named in ("state rebalancing", "generation 3", "for 61 s", "assigned none", "lag none"):
        assert named in warning
    assert dog.wedged() == "rebalancing for 61 s (bound 60 s)"  # /readyz
    # still rebalancing: the bound counts again from the reset, then the consumer is rebuilt
    clock.now += STUCK_S
    assert dog.check() is None
    clock.now += 1
    step = dog.check()
    assert step is not None and step[0] is Action.REBUILD
    # the new consumer joins: healthy; after twice the bound the next wedge starts over
    dog.observe(membership(GroupState.STABLE, clock.now, 2), frozenset({TP0, TP1}))
    assert dog.check() is None and dog.wedged() is None
    clock.now += 2 * STUCK_S
    assert dog.check() is None
    dog.observe(membership(GroupState.REBALANCING, clock.now), frozenset())
    clock.now += STUCK_S + 1
    step = dog.check()
    assert step is not None and step[0] is Action.SOFT_RESET


def test_three_resets_in_ten_minutes_fail_healthz_naming_why_and_it_recovers_after() -> None:
    clock = Clock()
    dog = Watchdog(STUCK_S, clock)
    health = Health(1000.0, clock)
    health.resets_failing = dog.failing
    health.set_phase("connecting")
    health.set_phase("running")
    dog.observe(membership(GroupState.REBALANCING, clock.now), frozenset())
    actions = []
    for _ in range(MAX_RESETS):
        assert health.liveness().status == 200
        clock.now += STUCK_S + 1
        health.heartbeat.beat()
        step = dog.check()
        assert step is not None
        actions.append(step[0])
    assert actions == [Action.SOFT_RESET, Action.REBUILD, Action.REBUILD]
    alive = health.liveness()
    assert alive.status == 503 and alive.body["status"] == "wedged"
    assert "reset 3 times in 10 minutes (rebalancing)" in alive.body["reason"]
    clock.now += RESET_WINDOW_S - 2 * (STUCK_S + 1) + 0.5  # the first reset ages out
    health.heartbeat.beat()
    assert dog.failing() is None and health.liveness().status == 200


def test_two_resets_ten_minutes_apart_do_not_fail_healthz() -> None:
    clock = Clock()
    dog = Watchdog(STUCK_S, clock)
    for _ in range(MAX_RESETS):
        dog.observe(membership(GroupState.REBALANCING, clock.now), frozenset())
        clock.now += STUCK_S + 1
        assert dog.check() is not None
        dog.observe(membership(GroupState.STABLE, clock.now, 1), frozenset({TP0}))
        clock.now += RESET_WINDOW_S / 2
        assert dog.check() is None
    assert dog.failing() is None


def orphan_log() -> Log:
    log = Log("in")
    log.append(0, [b"a"] * 5)
    log.append(1, [b"b"] * 5)
    return log


def test_orphaned_needs_unmoving_committed_offsets_for_the_bound_and_the_coordinator() -> None:
    clock = Clock()
    dog = Watchdog(STUCK_S, clock)
    log = orphan_log()
    admin = FakeAdmin(log)
    ours = frozenset({TP0})
    dog.observe(membership(GroupState.STABLE, clock.now, 1), ours)
    log.members = {"me": ours, "other": frozenset({TP1})}  # another member owns 1
    for _ in range(3):
        dog.gather(admin, admin.lag())
        clock.now += STUCK_S
    assert admin.n_described == 2 and dog.check() is None  # owned: the other member's business
    log.members = {"me": ours}  # nobody owns 1 now
    log.committed[TP1] = 2  # ... but it moved: the bound counts again
    dog.gather(admin, admin.lag())
    assert dog.check() is None
    clock.now += STUCK_S - 1
    dog.gather(admin, admin.lag())
    assert dog.check() is None
    clock.now += 1
    dog.gather(admin, admin.lag())
    step = dog.check()
    assert step is not None and step[0] is Action.SOFT_RESET and step[1].reason == "orphaned"
    assert "no member owns in:1" in step[1].detail


def test_orphaned_when_the_coordinator_does_not_list_this_member() -> None:
    clock = Clock()
    dog = Watchdog(STUCK_S, clock)
    log = orphan_log()
    admin = FakeAdmin(log)
    dog.observe(membership(GroupState.UNASSIGNED, clock.now, 0, "lost"), frozenset())
    log.members = {"other": frozenset({TP0, TP1})}
    dog.gather(admin, admin.lag())
    clock.now += STUCK_S
    dog.gather(admin, admin.lag())
    step = dog.check()
    assert step is not None and step[1].reason == "orphaned"
    assert "does not list this member (lost)" in step[1].detail
    assert dog.wedged() == step[1].detail
    health = Health(1000.0, clock)
    health.wedged = dog.wedged
    health.set_phase("connecting")
    health.set_phase("running")
    health.assigned(0)
    health.membership("unassigned", 0.0)
    ready = health.readiness()
    assert ready.status == 503 and ready.body["checks"]["group"] == step[1].detail
    assert "the consumer group membership is stable but orphaned" in ready.body["reason"]
    dog.observe(membership(GroupState.STABLE, clock.now, 2, "new"), frozenset({TP0, TP1}))
    assert dog.check() is None and health.readiness().status == 200  # joined again: ready


def test_a_rebalance_is_timed_from_leaving_stable_to_stable_again() -> None:
    clock = Clock()
    dog = Watchdog(STUCK_S, clock)
    assert dog.observe(membership(GroupState.REBALANCING, 1000.0), frozenset()) is None
    assert dog.observe(membership(GroupState.STABLE, 1004.0), frozenset()) is None  # start-up
    assert dog.observe(membership(GroupState.REBALANCING, 1010.0), frozenset()) is None
    assert dog.observe(membership(GroupState.REBALANCING, 1010.0), frozenset()) is None
    assert dog.observe(membership(GroupState.UNASSIGNED, 1012.5), frozenset()) == 2.5


# -- recoveries on the in-memory transport --------------------------------------------------------


def guarded(
    pipeline: Pipeline,  # noqa: F811
    log: Log,
    wedge: str,
    sticky: bool,
    guarantee: str = "at_least_once",
) -> tuple[Any, RenewableSource, Metrics, list[FakeSource]]:
    """A loop on a renewable fake source whose first member is held wedged at its 5th poll;
    every poll is a second on the watchdog's clock, every turn gathers the evidence (as the lag
    thread does), and the loop stops once every event is committed. ``exactly_once``: one
    transaction spans the batches of 5 s, so a reset finds one open."""
    clock = Clock()
    members: list[FakeSource] = []
    done = all_committed(log, 40)

    def poll(polled: FakeSource) -> None:
        clock.now += 1.0
        if polled is members[0] and polled.n_polls == 5:
            polled.hold(wedge, sticky)
        assert clock.now < 1000.0 + 20 * STUCK_S, "never recovered"
        if done():
            loop.stop()

    def make() -> FakeSource:
        source = FakeSource(log, on_commit=never_ahead_of_publishing(log))
        source.clock = MembershipClock(clock)
        source.on_poll = poll
        members.append(source)
        return source

    source = RenewableSource(make)
    metrics = Metrics(CollectorRegistry())
    metrics.initialise(input_topic="in", models=["a"], strategies=["soft_vote"])
    dog = Watchdog(STUCK_S, clock)
    admin = FakeAdmin(log)

    def between() -> None:
        dog.gather(admin, admin.lag())
        tend(source, dog, loop, metrics)

    loop = make_loop(
        pipeline,
        source,
        FakeSink(log),
        exactly_once=guarantee == "exactly_once",
        max_events=8,
        clock=clock,
        interval_s=5.0 if guarantee == "exactly_once" else 0.0,
        between_batches=between,
    )
    return loop, source, metrics, members


def resets(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value(  # type: ignore[no-any-return]
        "streamfuse_consumer_resets_total", {"reason": reason}
    )


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
@pytest.mark.parametrize("wedge", ["rebalancing", "orphaned"])
@pytest.mark.parametrize("sticky", [False, True], ids=["soft reset", "rebuild"])
def test_a_wedged_member_recovers_and_nothing_is_lost(
    pipeline: Pipeline,  # noqa: F811
    wedge: str,
    sticky: bool,
    guarantee: str,
) -> None:
    log = filled(40)
    loop, source, metrics, members = guarded(pipeline, log, wedge, sticky, guarantee)
    loop.run()
    ids = published_ids(log)
    assert set(ids) == {f"p{p}-{i}" for p in range(2) for i in range(40)}  # nothing lost
    if guarantee == "exactly_once":  # what was open at the reset was aborted, never visible
        assert max(ids.values()) == 1
    assert members[0].n_resets == 1  # a soft reset first, in either case
    assert resets(metrics, wedge) == (2 if sticky else 1)
    assert source.n_renewed == (1 if sticky else 0)  # rebuilt only when the reset did not help
    assert len(members) == (2 if sticky else 1)
    rebalances = metrics.registry.get_sample_value("streamfuse_rebalance_duration_seconds_count")
    assert rebalances is not None and rebalances >= 1
    other = next(r for r in CONSUMER_RESET_REASONS if r != wedge)
    assert resets(metrics, other) == 0


def test_exactly_once_a_reset_aborts_the_open_transaction(pipeline: Pipeline) -> None:  # noqa: F811
    log = filled(40)
    clock = Clock()
    source = RenewableSource(lambda: FakeSource(log))
    assert isinstance(source.inner, FakeSource)
    sink = FakeSink(log, source.inner)
    loop = make_loop(pipeline, source, sink, exactly_once=True, clock=clock, interval_s=3600.0)
    loop.run(max_batches=2)  # two batches delivered into one open transaction
    assert sink.n_begun == 1 and not log.committed
    loop.revoke_all(source.reset)
    assert sink.n_aborted == 1 and loop.running is None and loop.ready is None
    assert [c.revoked for c in source.changes()] == [(TP0, TP1)]
    assert not log.published.get("out")  # nothing of the aborted transaction is visible


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_consumer_that_cannot_read_its_committed_offsets_is_rebuilt(
    pipeline: Pipeline,  # noqa: F811
    guarantee: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found in the fault suite: after a broker restart a confluent-kafka consumer's every read
    of its committed offsets timed out, and the loop retried them on that consumer for good,
    serving nothing. The third failed read builds a new consumer, which starts from them."""
    log = filled(40)
    members: list[FakeSource] = []

    def make() -> FakeSource:
        member = FakeSource(log, on_commit=never_ahead_of_publishing(log))
        if not members:  # the first consumer never reads them again
            member.refuse_next["seek_to_committed"] = 1_000
        member.on_poll = poll
        members.append(member)
        return member

    done = all_committed(log, 40)

    def poll(member: FakeSource) -> None:
        assert member.n_polls < 20_000, "the loop made no progress"
        if done():
            loop.stop()

    metrics = Metrics(CollectorRegistry())
    metrics.initialise(input_topic="in", models=["a"], strategies=["soft_vote"])
    source = RenewableSource(make, metrics)
    sink = FakeSink(log)
    exactly_once = guarantee == "exactly_once"
    if exactly_once:
        sink.abort_next_transactions = 1  # redone from the committed offsets
    else:
        members[0].refuse_next["seek"] = 1  # a refused seek falls back to them
        sink.fail_next_flushes = 1
    loop = make_loop(
        pipeline, source, sink, exactly_once=exactly_once, max_events=8, rebuild=source.rebuild
    )
    with caplog.at_level(logging.ERROR, logger="streamfuse.worker"):
        loop.run()
    ids = published_ids(log)
    assert set(ids) == {f"p{p}-{i}" for p in range(2) for i in range(40)}  # nothing lost
    if exactly_once:
        assert max(ids.values()) == 1
    assert len(members) == 2 and source.n_renewed == 1
    assert members[0].refuse_next["seek_to_committed"] == 1_000 - 3
    assert resets(metrics, "committed_unreadable") == 1
    assert "3 times in a row: building a new consumer" in caplog.text


def test_a_consumer_that_cannot_be_rebuilt_yet_is_rebuilt_at_the_next_step(
    pipeline: Pipeline,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
    registry: CollectorRegistry,
) -> None:
    log = filled(4)
    clock = Clock()
    broker_down = [False]

    def make() -> FakeSource:
        if broker_down[0]:
            raise BrokerUnavailableError("fake:9092", 30, "injected")
        source = FakeSource(log)
        source.clock = MembershipClock(clock)
        return source

    source = RenewableSource(make, clock=clock)
    first = source.inner
    assert isinstance(first, FakeSource)
    first.hold("rebalancing", sticky=True)
    dog = Watchdog(STUCK_S, clock)
    metrics = Metrics(registry)
    loop = make_loop(pipeline, source, FakeSink(log))
    assert tend(source, dog, loop, metrics) is None
    clock.now += STUCK_S + 1
    assert tend(source, dog, loop, metrics) is Action.SOFT_RESET
    first.poll(0.0, 1)  # the join is answered: wedged again (sticky)
    clock.now += STUCK_S + 1
    broker_down[0] = True
    with caplog.at_level(logging.WARNING, logger="streamfuse.watchdog"):
        assert tend(source, dog, loop, metrics) is Action.REBUILD
    assert "resetting the consumer failed" in caplog.text and source.inner is None
    with pytest.raises(TransportError, match="being rebuilt"):
        source.poll(0.0, 1)
    assert source.membership().state is GroupState.REBALANCING
    broker_down[0] = False
    clock.now += STUCK_S + 1
    assert tend(source, dog, loop, metrics) is Action.REBUILD
    assert source.inner is not None and source.inner is not first
    assert source.membership().state is GroupState.STABLE
    assert resets(metrics, "rebalancing") == 3


def test_an_orphan_the_group_resolves_before_the_check_is_left_alone() -> None:
    clock = Clock()
    dog = Watchdog(STUCK_S, clock)
    log = orphan_log()
    admin = FakeAdmin(log)
    dog.observe(membership(GroupState.STABLE, clock.now, 1), frozenset({TP0}))
    log.members = {"me": frozenset({TP0})}
    dog.gather(admin, admin.lag())
    clock.now += STUCK_S
    dog.gather(admin, admin.lag())  # confirmed: nobody owns in:1
    both = frozenset({TP0, TP1})
    dog.observe(membership(GroupState.STABLE, clock.now, 2), both)  # a rebalance gave it to us
    log.members = {"me": both}
    dog.gather(admin, admin.lag())
    assert dog.check() is None and dog.wedged() is None
