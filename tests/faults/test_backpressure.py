"""A model ten times slower than the input: memory stays bounded, lag grows, nothing is lost,
and the worker keeps its group membership (no poll-interval expiry) throughout."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable

import numpy as np
import pytest
import yaml
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.support import (
    InjectedWorker,
    MemoryWatch,
    Tail,
    fast_group,
    produce_at_rate,
    rss_mb,
)
from tests.support.kafka import Broker
from tests.support.scenario import Scenario
from tests.support.worker import events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

RATE = 2000  # events per second in
N_EVENTS = 20_000  # ten seconds of input
SLOW_S_PER_EVENT = 0.005  # the slow model: 200 events per second, a tenth of the input rate
MAX_RSS_GROWTH_MB = 300


def group_lag(kafka: Broker, group: str, topic: str, partitions: int) -> int:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    probe = KafkaConsumer(bootstrap_servers=kafka.bootstrap, group_id=None)
    try:
        ends = probe.end_offsets(tps)
    finally:
        probe.close()
    committed = kafka.admin.list_group_offsets({group: tps}).get(group, {})
    done = {tp: max(0, om.offset) for tp, om in committed.items() if om is not None}
    return sum(ends[tp] - done.get(tp, 0) for tp in tps)


def lag_gauge(port: int) -> float | None:
    """The sum of ``streamfuse_consumer_lag`` over partitions, or None when not exported."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = [
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == "streamfuse_consumer_lag"
        for s in family.samples
    ]
    return sum(values) if values else None


def test_a_model_ten_times_slower_than_the_input(
    scenario: Callable[..., Scenario],
    figures,
    library: str,
) -> None:
    s = scenario(partitions=2, group="slow")
    t = s.topics
    X = np.resize(s.rows, (N_EVENTS, s.rows.shape[1]))
    ids, values = events(X, "b")
    config = s.config(
        shadows=(),
        batch={"max_events": 100, "max_wait_ms": 20},
        # Generous model timeout: the slow model is waited for, so the whole worker is slow.
        on_model_error={"timeout_ms": 10_000},
        # A tightened poll interval: an expiry would show (as "revoked") within the test.
        kafka={"consumer": fast_group(library, max_poll_interval_ms=10_000)},
        metrics={"lag_interval_s": 1.0},
    )
    metrics_port = yaml.safe_load(config.read_text())["metrics"]["port"]
    delay = s.tmp_path / "slow-seconds-per-event"
    delay.write_text(str(SLOW_S_PER_EVENT))
    worker = InjectedWorker(
        config,
        s.tmp_path / "w.log",
        env={"STREAMFUSE_TEST_SLOW_MODEL": "hgb", "STREAMFUSE_TEST_SLOW_FILE": str(delay)},
    ).start()
    tail = Tail(s.kafka.bootstrap, t.output)
    try:
        worker.wait_assigned()
        assert worker.proc is not None
        baseline = rss_mb(worker.proc.pid)  # models loaded, group joined
        memory = MemoryWatch(worker.proc.pid)
        lags: list[int] = []
        gauges: list[float | None] = []
        producer = threading.Thread(
            target=produce_at_rate,
            args=(s.kafka.bootstrap, t.input, values, [i.encode() for i in ids], RATE),
        )
        started = time.monotonic()
        producer.start()
        while producer.is_alive():
            lags.append(group_lag(s.kafka, s.group, t.input, 2))
            gauges.append(lag_gauge(metrics_port))
            producer.join(1.0)
        lags.append(group_lag(s.kafka, s.group, t.input, 2))
        gauges.append(lag_gauge(metrics_port))
        out_when_input_done = tail.distinct()
        delay.write_text("0")  # the model is fast again: the backlog drains
        seen = tail.wait_all(ids, timeout=180, alive=[worker])
        drained = time.monotonic() - started
    finally:
        worker.stop()
        tail.close()
    memory.close()
    log = worker.text()
    assert worker.proc.returncode == 0, log
    growth = memory.peak - baseline
    lost = len(set(ids) - set(seen))
    exported = [g for g in gauges if g is not None]
    figures(
        events_sent=N_EVENTS,
        input_rate=RATE,
        slow_model_rate=int(1 / SLOW_S_PER_EVENT),
        out_while_slow=out_when_input_done,
        lag_samples=lags,
        lag_gauge_samples=gauges,
        rss_baseline_mb=round(baseline),
        rss_peak_mb=round(memory.peak),
        lost=lost,
        duplicates=sum(c - 1 for c in seen.values()),
        seconds=round(drained, 1),
    )
    assert lost == 0
    # The worker kept up with a tenth of the input at most: the lag grew while input came in.
    assert out_when_input_done < N_EVENTS / 2
    assert lags[-1] > N_EVENTS / 2 and lags[-1] > lags[len(lags) // 2] > lags[0]
    assert growth < MAX_RSS_GROWTH_MB, f"VmRSS grew by {growth:.0f} MB under backpressure"
    # Membership held from the first real assignment until SIGTERM: no revocation, no re-join.
    lines = log.splitlines()
    first = next(
        n for n, line in enumerate(lines) if "partitions assigned: " in line and "none" not in line
    )
    after = lines[first + 1 :]
    held = after[: next((n for n, line in enumerate(after) if "SIGTERM" in line), len(after))]
    assert not [line for line in held if "revoked" in line or "assigned" in line], log
    assert exported, "streamfuse_consumer_lag was never exported"
    assert max(exported) > N_EVENTS / 2
