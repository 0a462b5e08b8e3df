"""The poison corpus through a real worker: every case dead-lettered with its stage and reason,
bytes, key and source intact, the good events around it predicted, the worker alive and its
memory bounded."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from tests.faults.poison import Poison, corpus
from tests.faults.support import MemoryWatch, Tail, rss_mb
from tests.support.kafka import wait_for
from tests.support.scenario import Scenario
from tests.support.worker import events, produce

pytestmark = pytest.mark.kafka

N_GOOD = 500
HEAVY_COPIES = 4  # the multi-megabyte cases again, to see memory stay flat
MAX_RSS_GROWTH_MB = 400
DLQ_MAX_BYTES = 900_000  # topics.dead_letter_max_bytes default


def test_poison_corpus_is_dead_lettered_and_the_worker_lives_on(
    scenario: Callable[..., Scenario],
    figures,
    library: str,
) -> None:
    s = scenario(group="poison")
    t = s.topics
    n_features = s.rows.shape[1]
    cases = corpus(n_features)
    light = [c for c in cases if len(c.value or b"") <= 500_000]
    heavy = [c for c in cases if len(c.value or b"") > 500_000]
    heavy += [
        Poison(f"{c.name}_copy{k}", c.value, c.stage, c.reason)
        for k in range(HEAVY_COPIES)
        for c in heavy
    ]
    X = np.resize(s.rows, (N_GOOD, n_features))
    ids, good = events(X, "g")
    # A duplicate id in the same batch: the first is predicted, the second dead-lettered.
    duplicate = Poison("duplicate_id", good[0], "validate", f"duplicate id {ids[0]!r}")
    # Small poison first (one batch with the duplicate pair), good events, then the heavy ones.
    stream: list[tuple[bytes | None, bytes | None, Poison | None]] = [
        (ids[0].encode(), good[0], None),
        (duplicate.record_key, duplicate.value, duplicate),
        *((c.record_key, c.value, c) for c in light),
        *((i.encode(), v, None) for i, v in zip(ids[1:], good[1:], strict=True)),
        *((c.record_key, c.value, c) for c in heavy),
    ]
    # One good event with a null key: published, keyed by its id.
    stream.append((None, orjson.dumps({"id": "null-key-good", "features": X[0].tolist()}), None))
    sent_offsets = _produce(s.kafka.bootstrap, t.input, [(k, v) for k, v, _ in stream])
    poison = {off: c for off, (_, _, c) in zip(sent_offsets, stream, strict=True) if c is not None}

    config = s.config(
        shadows=(),
        batch={"max_events": 512, "max_wait_ms": 50},
    )
    worker = s.worker(config, "w.log")
    out = Tail(s.kafka.bootstrap, t.output)
    dlq = Tail(s.kafka.bootstrap, t.dead_letter)
    memory = None
    try:
        worker.wait_assigned()
        assert worker.proc is not None
        baseline = rss_mb(worker.proc.pid)
        memory = MemoryWatch(worker.proc.pid, interval=0.05)
        out.wait_all([*ids, "null-key-good"], timeout=120, idle_s=0.5)
        wait_for(lambda: dlq.count >= len(poison), timeout=120, what="every dead letter")
        time.sleep(1.0)  # nothing more may arrive: no good event dead-lettered, no double letter
        assert worker.proc.poll() is None, "the worker died:\n" + worker.text()
        # Still alive and serving: one more good event after the corpus.
        after = orjson.dumps({"id": "after", "features": X[1].tolist()})
        produce(s.kafka.bootstrap, t.input, [after])
        out.wait_all(["after"], timeout=60, idle_s=0.2)
    finally:
        worker.stop()
        out.close()
        dlq.close()
        if memory is not None:
            memory.close()
    assert worker.proc.returncode == 0, worker.text()

    letters = list(dlq.records)
    by_stage = Counter(dict(r.headers)["streamfuse.stage"].decode() for r in letters)
    figures(
        poison_tried=len(poison),
        poison_dead_lettered=len(letters),
        distinct_cases=len({c.name.split("_copy")[0] for c in poison.values()}),
        by_stage=dict(by_stage),
        good_published=len(out.ids),
        rss_baseline_mb=round(baseline),
        rss_peak_mb=round(memory.peak),
    )
    assert len(letters) == len(poison)
    problems = []
    for record in letters:
        headers = {k: v.decode() for k, v in record.headers}
        topic, partition, offset = headers["streamfuse.source"].rsplit(":", 2)
        case = poison.get(int(offset))
        if case is None or topic != t.input or partition != "0":
            problems.append(f"unexpected dead letter from {headers['streamfuse.source']}")
            continue
        if (
            headers["streamfuse.stage"] != case.stage
            or case.reason not in headers["streamfuse.error"]
        ):
            problems.append(
                f"{case.name}: got {headers['streamfuse.stage']}: {headers['streamfuse.error']!r},"
                f" expected {case.stage}: ...{case.reason}..."
            )
        if record.key != case.record_key:
            problems.append(f"{case.name}: key {record.key!r}, sent {case.record_key!r}")
        original = case.value or b""
        if len(original) > DLQ_MAX_BYTES:
            if headers.get("streamfuse.truncated") != str(len(original)):
                problems.append(f"{case.name}: oversized letter without its original size")
            if record.value != original[:DLQ_MAX_BYTES]:
                problems.append(f"{case.name}: truncated letter is not a prefix of the original")
        elif (record.value or b"") != original:
            problems.append(f"{case.name}: the dead letter's bytes differ from the original")
    assert not problems, "\n".join(problems)
    assert sorted(out.ids) == sorted([*ids, "null-key-good", "after"])
    assert max(out.ids.values()) == 1
    null_keyed = [r for r in out.records if orjson.loads(r.value)["id"] == "null-key-good"]
    assert [r.key for r in null_keyed] == [b"null-key-good"]
    growth = memory.peak - baseline
    assert growth < MAX_RSS_GROWTH_MB, f"VmRSS grew by {growth:.0f} MB on the poison corpus"


def _produce(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> list[int]:
    """Send in order; returns each record's offset."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, acks="all", max_request_size=4 << 20
    )
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in records]
        producer.flush()
        return [f.get(timeout=30).offset for f in futures]
    finally:
        producer.close()
