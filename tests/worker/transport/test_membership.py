"""Each Source reports its group membership; the metrics and /readyz follow it (issue 22).

The in-memory fake keeps the same contract as the adapters (their broker test is
tests/integration/test_partition_growth.py); everything here runs without a broker.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.fake_transport import FakeSource, Log
from worker.config import settings_from_dict
from worker.metrics import GROUP_STATES, Metrics
from worker.service.health import Health
from worker.transport import GroupState, TopicPartition
from worker.transport.membership import MembershipClock

MINIMAL: dict[str, Any] = {"models": [{"name": "rf"}], "strategy": {"name": "soft_vote"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_state_keeps_its_start_until_it_changes() -> None:
    clock = Clock()
    membership = MembershipClock(clock)
    first = membership.observe(GroupState.REBALANCING, 0, 0)
    clock.now += 30
    again = membership.observe(GroupState.REBALANCING, 0, 0)
    assert again.since == first.since == 1000.0 and again.age_s(clock.now) == 30.0
    stable = membership.observe(GroupState.STABLE, 3, 2)
    assert stable.since == 1030.0 and stable.age_s(clock.now) == 0.0
    assert (stable.generation, stable.n_partitions) == (3, 2)


def test_the_fake_source_reports_stable_rebalancing_and_unassigned() -> None:
    log = Log("in")
    log.append(0, [b"a"])
    log.append(1, [b"b"])
    source = FakeSource(log)
    clock = Clock()
    source.clock = MembershipClock(clock)
    m = source.membership()
    assert (m.state, m.n_partitions, m.generation) == (GroupState.STABLE, 2, 1)
    source.stable = False
    clock.now += 5
    m = source.membership()
    assert m.state is GroupState.REBALANCING and m.age_s(clock.now) == 0.0
    clock.now += 70
    assert source.membership().age_s(clock.now) == 70.0
    source.stable = True
    source.rebalance(set())  # more members than partitions
    m = source.membership()
    assert (m.state, m.n_partitions, m.generation) == (GroupState.UNASSIGNED, 0, 2)
    source.rebalance({TopicPartition("in", 1)})
    assert source.membership().state is GroupState.STABLE


def running(clock: Clock, stuck_s: float | None) -> Health:
    health = Health(1000.0, clock, rebalance_stuck_s=stuck_s)
    health.set_phase("connecting")
    health.set_phase("running")
    health.assigned(0)
    return health


def test_readyz_fails_while_rebalancing_longer_than_the_bound_and_recovers() -> None:
    clock = Clock()
    health = running(clock, stuck_s=60.0)
    assert "group" not in health.readiness().body["checks"]  # nothing reported yet
    health.membership("rebalancing", 0.0)
    ready = health.readiness()
    assert ready.status == 200 and ready.body["checks"]["group"] == "rebalancing"
    clock.now += 60.0
    assert health.readiness().status == 200
    clock.now += 1.0  # no new report needed: the age grows with the clock
    ready = health.readiness()
    assert ready.status == 503
    assert ready.body["checks"]["group"] == "rebalancing for 61 s (bound 60 s)"
    assert "consumer group membership is rebalancing for 61 s" in ready.body["reason"]
    assert health.liveness().status == 200  # the loop still turns: alive, not ready
    health.membership("stable", 0.0)
    ready = health.readiness()
    assert ready.status == 200 and ready.body["checks"]["group"] == "stable"


def test_unassigned_for_long_is_ready_and_no_bound_means_no_check() -> None:
    clock = Clock()
    health = running(clock, stuck_s=60.0)
    health.membership("unassigned", 600.0)
    assert health.readiness().status == 200
    unbounded = running(clock, stuck_s=None)
    unbounded.membership("rebalancing", 600.0)
    assert unbounded.readiness().status == 200


def test_the_stuck_bound_is_the_session_timeout_plus_15_s_unless_given() -> None:
    def stuck(kafka: dict[str, Any]) -> float:
        s = settings_from_dict({**MINIMAL, "kafka": kafka}, environ={})
        return float(s.kafka.effective_rebalance_stuck_s)

    assert stuck({}) == 60.0
    assert stuck({"consumer": {"session_timeout_ms": 10_000}}) == 25.0
    assert stuck({"rebalance_stuck_s": 90}) == 90.0


def test_the_membership_gauges(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry)
    metrics.initialise(input_topic="in", models=["rf"], strategies=["soft_vote"])

    def state(name: str) -> float | None:
        return registry.get_sample_value("streamfuse_group_state", {"state": name})

    assert [state(s) for s in GROUP_STATES] == [0, 1, 0]  # rebalancing until the first report
    metrics.set_membership("stable", 12.5, 4, 3)
    assert [state(s) for s in GROUP_STATES] == [1, 0, 0]
    assert registry.get_sample_value("streamfuse_group_state_age_seconds") == 12.5
    assert registry.get_sample_value("streamfuse_group_generation") == 4
    assert registry.get_sample_value("streamfuse_assigned_partitions") == 3


@pytest.mark.parametrize("state", list(GroupState))
def test_every_state_is_a_label_the_metrics_know(state: GroupState) -> None:
    assert state.value in GROUP_STATES
