"""The worker against the real broker: every event predicted once, bad input dead-lettered,
crashes and signals handled per the delivery guarantee, scale-out, a failing model."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

import combiners
from model_store import ModelStore
from tests.faults.support import fast_group
from tests.support.kafka import wait_for
from tests.support.scenario import Scenario
from tests.support.worker import events, produce
from worker.config import load_settings
from worker.service.worker import Worker

pytestmark = pytest.mark.kafka


def offline(store: Path, X: np.ndarray, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """The same models and fitted strategy, run directly on the same rows."""
    s = ModelStore(store)
    P = np.stack([s.load(n).predict_outputs(X) for n in ("rf", "hgb", "linear", "mlp")])
    stored = s.load_strategy(strategy)
    return P, combiners.load_state(stored.meta, stored.arrays).combine(P)


def count_ids(records: list) -> Counter[str]:
    return Counter(orjson.loads(r.value)["id"] for r in records)


def test_ten_thousand_events_each_predicted_once_equal_to_offline(scenario, library: str) -> None:
    s = scenario(partitions=2, group="tenk")
    t = s.topics
    n = 10_000
    X = np.resize(s.rows, (n, s.rows.shape[1]))
    ids, values = events(X, "e")
    produce(s.kafka.bootstrap, t.input, values, [i.encode() for i in ids])
    worker = s.worker(s.config(), "worker.log")
    try:
        out = s.kafka.consume_all(t.output, n, timeout=120)
    finally:
        worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.text()
    seen = count_ids(out)
    print(f"{library}: published {len(out)} predictions for {n} events; distinct {len(seen)}")
    assert set(seen) == set(ids) and max(seen.values()) == 1

    P, combined = offline(s.store, X, "soft_vote")
    row = {i: k for k, i in enumerate(ids)}
    docs = [orjson.loads(r.value) for r in out]
    order = np.array([row[d["id"]] for d in docs])
    scores = np.array([d["scores"] for d in docs])
    np.testing.assert_allclose(scores, combined[order], rtol=0, atol=1e-12)
    assert [d["prediction"] for d in docs] == combined[order].argmax(axis=1).tolist()
    rf_scores = np.array([d["models"]["rf"]["scores"] for d in docs])
    np.testing.assert_allclose(rf_scores, P[0][order], rtol=0, atol=1e-12)
    assert all(d["strategy"] == "soft_vote" and not d["degraded"] for d in docs)
    assert all(d["classes"] == d["models"]["rf"]["classes"] == [0, 1] for d in docs)
    assert {d["models"]["mlp"]["version"] for d in docs} == {1}
    sources = {r.headers[0][1].decode().rsplit(":", 1)[0] for r in out}
    assert sources == {f"{t.input}:0", f"{t.input}:1"}


def test_mixed_stream_bad_events_are_dead_lettered_with_stage(scenario, library: str) -> None:
    s = scenario(group="mixed")
    t = s.topics
    n_good = 950
    X = np.resize(s.rows, (n_good, s.rows.shape[1]))
    ids, good = events(X, "m")
    n_features = X.shape[1]
    bad: list[tuple[bytes, str]] = []
    for i in range(50):
        kind = i % 6
        if kind == 0:
            bad.append((b'{"id": "x", "features": [1, 2', "decode"))
        elif kind == 1:
            bad.append((b'{"id": "\xff\xfe", "features": []}', "decode"))
        elif kind == 2:
            bad.append((orjson.dumps({"features": [0.0] * n_features}), "validate"))
        elif kind == 3:
            bad.append((orjson.dumps({"id": f"w{i}", "features": [0.0] * 3}), "validate"))
        elif kind == 4:
            bad.append(
                (b'{"id": "nan%d", "features": [NaN%s]}' % (i, b", 0" * (n_features - 1)), "decode")
            )
        else:
            big = orjson.dumps({"id": f"big{i}", "features": [0.5] * 200_000})
            padded = big + b" " * (2_000_000 - len(big))  # a 2 MB value, still valid JSON
            bad.append((padded, "validate"))
    stream = good[:]
    positions = np.random.default_rng(7).choice(len(good) + len(bad), len(bad), replace=False)
    for pos, (value, _) in sorted(zip(positions.tolist(), bad, strict=True)):
        stream.insert(pos, value)
    produce(s.kafka.bootstrap, t.input, stream, max_request_size=8 << 20)
    worker = s.worker(s.config(), "worker.log")
    try:
        out = s.kafka.consume_all(t.output, n_good, timeout=120)
        dead = s.kafka.consume_all(t.dead_letter, len(bad), timeout=60)
        assert worker.proc is not None and worker.proc.poll() is None, "the worker died"
    finally:
        worker.stop()
    stages = Counter(dict(r.headers)["streamfuse.stage"].decode() for r in dead)
    print(f"good {len(out)}/{n_good}, dead-lettered {len(dead)}/{len(bad)} by stage {dict(stages)}")
    assert sorted(count_ids(out)) == sorted(ids)
    assert stages == Counter(stage for _, stage in bad)
    for r in dead:
        headers = dict(r.headers)
        if "streamfuse.truncated" in headers:  # over topics.dead_letter_max_bytes: cut, not lost
            assert int(headers["streamfuse.truncated"]) == 2_000_000
            assert len(r.value) == 900_000
    kept = sorted(r.value for r in dead if "streamfuse.truncated" not in dict(r.headers))
    assert kept == sorted(v for v, _ in bad if len(v) <= 900_000)
    for r in dead:
        headers = dict(r.headers)
        assert headers["streamfuse.error"]
        assert headers["streamfuse.source"].decode().startswith(f"{t.input}:0:")
    # The log says why, one line per reason (within logging.dead_letter_interval_s), not per event.
    lines = [line for line in worker.text().splitlines() if "streamfuse.dead_letter" in line]
    assert all(any(f" at {stage}: " in line for line in lines) for stage in stages), lines
    assert sum(" at validate: missing 'id'" in line for line in lines) == 1, lines
    assert len(lines) < len(bad) // 2, lines


def _crash_and_recover(s: Scenario, guarantee: str, library: str) -> tuple[Counter[str], list[str]]:
    t = s.topics
    n = 6000
    X = np.resize(s.rows, (n, s.rows.shape[1]))
    ids, values = events(X, f"k{guarantee}")
    produce(s.kafka.bootstrap, t.input, values, [i.encode() for i in ids])
    config = s.config(
        kafka={
            "processing_guarantee": guarantee,
            "transaction_timeout_ms": 10000,
            # The killed member's session ends in 6 s, not the default 45: what is shown is
            # what the second worker reads and writes, not how long the broker waits.
            "consumer": fast_group(library),
        },
        batch={"max_events": 100, "max_wait_ms": 5},
    )
    first = s.worker(config, "w1.log")
    try:
        wait_for(
            lambda: len(s.kafka.consume_all(t.output, 1500, timeout=2)) >= 1500,
            timeout=120,
            what="a share of the output before the kill",
        )
    finally:
        first.kill()
    second = s.worker(config, "w2.log")
    try:
        isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
        out = s.kafka.consume_all(t.output, n, timeout=180, isolation_level=isolation, idle_s=2.0)
    finally:
        second.stop()
    return count_ids(out), ids


def test_exactly_once_survives_kill_9(scenario, library: str) -> None:
    seen, ids = _crash_and_recover(scenario(partitions=2, group="eos"), "exactly_once", library)
    dupes = sum(c - 1 for c in seen.values())
    print(f"{library} exactly_once after kill -9: {len(seen)} of {len(ids)}, {dupes} duplicates")
    assert set(seen) == set(ids)
    assert dupes == 0


def test_at_least_once_survives_kill_9(scenario, library: str) -> None:
    seen, ids = _crash_and_recover(scenario(partitions=2, group="alo"), "at_least_once", library)
    dupes = sum(c - 1 for c in seen.values())
    print(f"{library} at_least_once after kill -9: {len(seen)} of {len(ids)}, {dupes} duplicates")
    assert set(seen) == set(ids)


def test_sigterm_exits_zero_fast_with_offsets_committed(scenario, library: str) -> None:
    s = scenario(group="term")
    t = s.topics
    ids, values = events(s.rows, "s")
    produce(s.kafka.bootstrap, t.input, values)
    config = s.config()
    worker = s.worker(config, "w.log")
    s.kafka.consume_all(t.output, len(ids), timeout=120)
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.wait(30)
    took = time.monotonic() - started
    print(f"SIGTERM: exit {code} after {took:.2f}s")
    assert code == 0, worker.text()
    assert took < 5
    probe = KafkaConsumer(bootstrap_servers=s.kafka.bootstrap, group_id=s.group)
    try:
        committed = probe.committed(TopicPartition(t.input, 0))
    finally:
        probe.close()
    assert committed == len(ids)
    again = s.worker(config, "w2.log")
    try:
        again.wait_assigned()
        produce(
            s.kafka.bootstrap,
            t.input,
            [orjson.dumps({"id": "after", "features": s.rows[0].tolist()})],
        )
        out = s.kafka.consume_all(t.output, len(ids) + 1, timeout=60, idle_s=1.0)
    finally:
        again.stop()
    assert len(out) == len(ids) + 1, "the restart reprocessed committed events"


def test_two_workers_share_four_partitions(scenario, library: str) -> None:
    s = scenario(partitions=4, group="pair")
    t = s.topics
    n = 4000
    X = np.resize(s.rows, (n, s.rows.shape[1]))
    ids, values = events(X, "p")
    workers = []
    for i in range(2):
        config = s.config(f"c{i}", kafka={"instance_id": str(i)})
        workers.append(s.worker(config, f"w{i}.log"))
    try:
        for w in workers:
            w.wait_assigned()
        wait_for(
            lambda: (
                all(_assigned(w.text()) for w in workers)
                and sum(len(_assigned(w.text())) for w in workers) == 4
            ),
            timeout=60,
            what="both workers holding partitions",
        )
        produce(s.kafka.bootstrap, t.input, values, [i.encode() for i in ids])
        out = s.kafka.consume_all(t.output, n, timeout=120)
    finally:
        for w in workers:
            w.stop()
    seen = count_ids(out)
    parts = [_assigned(w.text()) for w in workers]
    print(f"two workers: {len(seen)} of {n} ids; partitions {parts}")
    assert set(seen) == set(ids)
    by_source = Counter(r.headers[0][1].decode().split(":")[1] for r in out)
    assert all(by_source[p.split(":")[1]] > 0 for w in parts for p in w)


def _assigned(log: str) -> list[str]:
    lines = [line for line in log.splitlines() if "partitions assigned: " in line]
    if not lines:
        return []
    last = lines[-1].split("partitions assigned: ", 1)[1].strip()
    return [] if last == "none" else last.split(", ")


def test_a_model_that_always_raises_degrades_outputs_and_loses_nothing(scenario) -> None:
    # Also (issue 24): the second half of the events gives no ts, so their event time is their
    # record's Kafka timestamp, set an hour back: the end-to-end latency observes them from it.
    s = scenario(group="fail")
    t = s.topics
    began = time.time()
    ids, values = events(s.rows, "f")
    half = len(ids) // 2
    untimed = [
        orjson.dumps({"id": i, "features": row})
        for i, row in zip(ids[half:], s.rows[half:].tolist(), strict=True)
    ]
    hour_ago_ms = int((began - 3600) * 1000)
    produce(s.kafka.bootstrap, t.input, values[:half])
    produce(s.kafka.bootstrap, t.input, untimed, timestamp_ms=hour_ago_ms)
    config = s.config(on_model_error={"policy": "renormalize", "min_models": 2})
    settings = load_settings(config)
    registry = CollectorRegistry()
    worker = Worker(settings, registry)

    def broken(X: np.ndarray) -> np.ndarray:
        raise RuntimeError("model file corrupted in memory")

    worker.model_set.models[1]._predictor = broken  # hgb
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        out = s.kafka.consume_all(t.output, len(ids), timeout=120)
    finally:
        worker.stop()
        thread.join(30)
    docs = [orjson.loads(r.value) for r in out]
    P, _ = offline(s.store, s.rows, "soft_vote")
    expected = P[[0, 2, 3]].mean(axis=0)  # soft_vote renormalised over rf, linear, mlp
    row = {i: k for k, i in enumerate(ids)}
    got = np.array([d["scores"] for d in docs])
    np.testing.assert_allclose(got, expected[[row[d["id"]] for d in docs]], atol=1e-12)
    degraded = registry.get_sample_value("streamfuse_events_degraded_total")
    errors = registry.get_sample_value(
        "streamfuse_model_errors_total", {"model": "hgb", "kind": "exception"}
    )
    elapsed = time.time() - began + 1.0  # a second's slack: ms timestamps, clock reads
    n_latency = registry.get_sample_value("streamfuse_end_to_end_latency_seconds_count")
    latency_s = registry.get_sample_value("streamfuse_end_to_end_latency_seconds_sum")
    print(
        f"degraded outputs {degraded}, hgb errors {errors}; end-to-end latency: {n_latency} "
        f"observed, sum {latency_s:.1f} s"
    )
    assert n_latency == len(ids)  # before issue 24, the untimed half was left out
    n_untimed = len(ids) - half
    assert 3600 * n_untimed <= latency_s <= (3600 + elapsed) * n_untimed + elapsed * half
    assert sorted(d["id"] for d in docs) == sorted(ids)
    assert all(d["degraded"] and d["models"]["hgb"]["error"] == "exception" for d in docs)
    assert degraded == len(ids)
    assert errors is not None and errors >= 1
    assert not thread.is_alive()
