"""Batch sizes and waits for ``batch.target_latency_ms`` (worker.batch.sizing)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.batch.sizing import MIN_BATCHES, BatchSizer
from worker.config import BatchSettings


def sizer(
    target_ms: int | None, max_events: int = 512, max_wait_ms: int = 20, when_idle: bool = False
) -> BatchSizer:
    return BatchSizer(max_events, max_wait_ms, when_idle, target_ms)


def feed(s: BatchSizer, a: float, b: float, sizes: list[int]) -> None:
    for n in sizes:
        s.observe(n, a + b * n)


def test_without_a_goal_batches_keep_the_settings() -> None:
    s = sizer(None, max_events=300, max_wait_ms=15)
    feed(s, 0.5, 0.01, [10, 20, 30, 40])  # far slower than any goal: ignored
    assert (s.limit(), s.wait_s(), s.estimate()) == (300, 0.015, None)


def test_the_settings_hold_until_enough_batches_were_timed() -> None:
    s = sizer(10)
    feed(s, 0.002, 0.0001, [10, 50][: MIN_BATCHES - 1])
    assert (s.limit(), s.wait_s()) == (512, 0.02)
    feed(s, 0.002, 0.0001, [100])
    assert s.limit() < 512


def test_the_cap_is_the_largest_batch_estimated_within_the_goal() -> None:
    s = sizer(22)
    feed(s, 0.002, 0.0001, [10, 50, 100, 40, 20])  # 2 ms a batch, 0.1 ms an event
    fit = s.estimate()
    assert fit is not None
    assert fit == pytest.approx((0.002, 0.0001))
    assert s.limit() in (199, 200)  # (22 - 2) / 0.1, give or take the rounding of floats
    assert s.wait_s() == pytest.approx(0.0, abs=1e-4)  # a full batch spends the whole goal


def test_with_room_in_the_goal_a_batch_waits_what_is_left_of_it() -> None:
    s = sizer(70, max_events=200, max_wait_ms=50)
    feed(s, 0.002, 0.0001, [10, 50, 100, 40, 20])  # 200 events: 22 ms, 48 ms to spare
    assert s.limit() == 200
    assert s.wait_s() == pytest.approx(0.048)
    roomy = sizer(500, max_events=200, max_wait_ms=50)
    feed(roomy, 0.002, 0.0001, [10, 50, 100])
    assert roomy.wait_s() == 0.05  # never longer than max_wait_ms


def test_starting_when_idle_a_batch_gathers_while_the_models_are_busy() -> None:
    s = sizer(22, when_idle=True)  # it waits only while it could not start anyway
    feed(s, 0.002, 0.0001, [10, 50, 100, 40, 20])
    assert s.limit() < 512
    assert s.wait_s() == 0.02


def test_the_sizer_takes_every_batch_setting() -> None:
    settings = BatchSettings(max_events=64, max_wait_ms=7, target_latency_ms=9)
    s = BatchSizer(**settings.model_dump())
    assert (s.max_events, s.max_wait_s, s.start_when_idle, s.target_s) == (64, 0.007, True, 0.009)


def test_batches_full_at_the_cap_lift_it_until_one_is_smaller() -> None:
    s = sizer(22)
    feed(s, 0.002, 0.0001, [10, 50, 100, 40, 20])
    cap = s.limit()
    feed(s, 0.002, 0.0001, [cap])
    assert s.limit() == s.cap  # one full batch may be a burst
    feed(s, 0.002, 0.0001, [s.cap])
    assert s.lifted and s.limit() == 512  # two in a row: behind
    feed(s, 0.002, 0.0001, [512, 512])
    assert s.lifted and s.limit() == 512  # still behind
    feed(s, 0.002, 0.0001, [60])
    assert not s.lifted and s.limit() == s.cap < 512  # caught up


def test_batches_of_one_size_are_estimated_per_event() -> None:
    s = sizer(5)
    feed(s, 0.0, 0.0001, [100, 100, 100])
    assert s.estimate() == pytest.approx((0.0, 0.0001))
    assert s.limit() == pytest.approx(50, abs=1)


def test_a_goal_below_one_batch_still_takes_one_event() -> None:
    s = sizer(1)
    feed(s, 0.005, 0.0001, [10, 50, 100])
    assert s.limit() == 1
    assert s.wait_s() == 0.0


def test_the_estimate_follows_the_recent_batches() -> None:
    s = sizer(50)
    sizes = [20, 80, 150, 60, 110] * 4
    feed(s, 0.001, 0.0001, sizes)
    feed(s, 0.001, 0.0004, sizes)  # the models became 4 times slower per event
    fit = s.estimate()
    assert fit is not None
    assert fit[1] == pytest.approx(0.0004, rel=0.1)
    assert s.limit() == pytest.approx((0.05 - fit[0]) / fit[1], abs=1)


@pytest.mark.parametrize("bad", [0, -5, 60_001])
def test_a_goal_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(ValidationError, match="target_latency_ms"):
        BatchSettings(target_latency_ms=bad)
