"""kill -9 at five random moments of a 50,000-event stream, restarting each time: at-least-once
publishes every id (duplicates counted), exactly-once every id once for a read_committed reader."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import numpy as np
import pytest

from tests.faults.support import Tail, fast_group
from tests.support.kafka import wait_for
from tests.support.scenario import Scenario
from tests.support.worker import events, produce

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_EVENTS = 30_000  # five kills still land at 5-90% of the stream; 50,000 cost 40 s more per case
N_KILLS = 5


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_kill_9_five_times_during_30k_events(
    scenario: Callable[..., Scenario],
    figures,
    guarantee: str,
    library: str,
) -> None:
    s = scenario(partitions=4, group="crash")
    t = s.topics
    X = np.resize(s.rows, (N_EVENTS, s.rows.shape[1]))
    ids, values = events(X, guarantee[0])
    produce(s.kafka.bootstrap, t.input, values, [i.encode() for i in ids])
    config = s.config(
        shadows=(),
        kafka={
            "processing_guarantee": guarantee,
            "transaction_timeout_ms": 10_000,
            "consumer": fast_group(library),
        },
        batch={"max_events": 500, "max_wait_ms": 20},
    )
    # Moments are progress points (distinct ids out), so every kill lands mid-stream whatever
    # the machine's speed; the worker is usually mid-batch or mid-transaction when it dies.
    rng = random.Random(f"crash-{guarantee}")
    moments = sorted(int(rng.uniform(0.05, 0.9) * N_EVENTS) for _ in range(N_KILLS))
    jitter = [rng.uniform(0.0, 0.5) for _ in moments]  # then a random phase of the batch loop
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    tail = Tail(s.kafka.bootstrap, t.output, isolation)
    started = time.monotonic()
    worker = s.worker(config, "w0.log")
    kills = 0
    try:
        for at, delay in zip(moments, jitter, strict=True):
            wait_for(lambda at=at: tail.distinct() >= at, timeout=180, what=f"{at} ids out")
            time.sleep(delay)
            worker.kill()
            kills += 1
            worker = s.worker(config, f"w{kills}.log")
        seen = tail.wait_all(ids, timeout=240, alive=[worker])
    finally:
        worker.stop()
        tail.close()
    took = time.monotonic() - started
    assert worker.proc is not None and worker.proc.returncode == 0, worker.text()
    lost = len(set(ids) - set(seen))
    duplicates = sum(c - 1 for c in seen.values())
    figures(
        guarantee=guarantee,
        events_sent=N_EVENTS,
        kills=kills,
        restarts=kills,
        kill_points=moments,
        published=sum(seen.values()),
        lost=lost,
        duplicates=duplicates,
        reader=isolation,
        seconds=round(took, 1),
    )
    assert kills == N_KILLS
    assert set(seen) == set(ids), f"{lost} ids never published"
    if guarantee == "exactly_once":
        assert duplicates == 0, f"{duplicates} duplicates seen by a read_committed reader"
