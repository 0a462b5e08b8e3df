"""Partitions added to a running worker's input are served within a minute (issue 22).

Both clients refresh topic metadata every 5 minutes by default; ``kafka.metadata_refresh_s``
maps to each client's own setting, so the group rebalances onto new partitions that soon.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import NewPartitions
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from tests.support.kafka import Broker, wait_for
from tests.support.scenario import Scenario
from tests.support.worker import events

pytestmark = pytest.mark.kafka

REFRESH_S = 5.0  # kafka.metadata_refresh_s in these tests (the default is 30)
SERVE_WITHIN_S = 60.0  # every event of a new partition predicted this soon after the growth
N_PER_PARTITION = 150


class Output:
    """Reads the output topic from the start, recording when each id was first seen."""

    def __init__(self, kafka: Broker, topic: str, isolation_level: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level=isolation_level,
            group_id=None,
            metadata_max_age_ms=1000,
        )
        self.seen: Counter[str] = Counter()
        self.first_seen: dict[str, float] = {}

    def read(self) -> None:
        for batch in self.consumer.poll(timeout_ms=200).values():
            now = time.monotonic()
            for record in batch:
                doc = orjson.loads(record.value)
                self.seen[doc["id"]] += 1
                self.first_seen.setdefault(doc["id"], now)

    def wait_for_all(self, ids: list[str], timeout: float, what: str) -> float:
        """Read until every id in ``ids`` is seen; the moment the last one was."""

        def all_seen() -> bool:
            self.read()
            return all(i in self.first_seen for i in ids)

        try:
            wait_for(all_seen, timeout=timeout, interval=0.0, what=what)
        except TimeoutError:
            missing = [i for i in ids if i not in self.first_seen]
            raise AssertionError(f"{what}: {len(missing)} of {len(ids)} never predicted") from None
        return max(self.first_seen[i] for i in ids)

    def close(self) -> None:
        self.consumer.close()


def produce_to(kafka: Broker, topic: str, by_partition: dict[int, list[bytes]]) -> None:
    """Each partition's values to that partition (a new producer: fresh metadata)."""
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5)
    try:
        futures = [
            producer.send(topic, value=v, partition=p)
            for p, values in by_partition.items()
            for v in values
        ]
        producer.flush()
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()


def grow(kafka: Broker, topics: list[str], partitions: int) -> None:
    """Grow each topic to ``partitions`` and wait until every partition has a leader."""
    kafka.admin.create_partitions({t: NewPartitions(partitions) for t in topics})

    def led(topic: str) -> bool:
        try:
            parts = kafka.admin.describe_topics([topic])[0].get("partitions", [])
        except KafkaError:
            return False
        return len(parts) == partitions and all(p.get("leader_id", -1) >= 0 for p in parts)

    for topic in topics:
        wait_for(lambda t=topic: led(t), what=f"{topic} grown to {partitions} partitions")


def scrape(config: Path) -> dict[tuple[str, str], float]:
    """The worker's /metrics: value by (name, state label or "")."""
    port = yaml.safe_load(config.read_text(encoding="utf-8"))["metrics"]["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, sample.labels.get("state", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def stable_on(metrics: dict[tuple[str, str], float], n: int) -> dict[str, float] | None:
    """The membership gauges when the worker reports "stable" on ``n`` partitions."""
    if metrics.get(("streamfuse_group_state", "stable")) != 1:
        return None
    if metrics.get(("streamfuse_assigned_partitions", "")) != n:
        return None
    return {
        name: metrics[(name, "")]
        for name in ("streamfuse_group_generation", "streamfuse_group_state_age_seconds")
    }


def batch_of(rows: np.ndarray, prefix: str, partitions: range) -> dict[int, Any]:
    """``N_PER_PARTITION`` events for each partition, ids ``<prefix>-p<partition>-<i>``."""
    out = {}
    for p in partitions:
        X = np.resize(rows, (N_PER_PARTITION, rows.shape[1]))
        out[p] = events(X, f"{prefix}-p{p}")
    return out


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_partitions_added_to_the_input_are_served_within_a_minute(
    scenario: Callable[..., Scenario], library: str, guarantee: str
) -> None:
    s = scenario(partitions=2, group="grow")
    t = s.topics
    config = s.config(kafka={"processing_guarantee": guarantee, "metadata_refresh_s": REFRESH_S})
    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
    output = Output(s.kafka, t.output, isolation)
    worker = s.worker(config, "worker.log")
    all_ids: list[str] = []
    served_s: dict[int, float] = {}
    membership: dict[str, float] = {}
    try:
        worker.wait_assigned(timeout=120)
        first = batch_of(s.rows, "g2", range(2))
        produce_to(s.kafka, t.input, {p: values for p, (_, values) in first.items()})
        all_ids += [i for ids, _ in first.values() for i in ids]
        output.wait_for_all(all_ids, 120, "the events of the first two partitions")

        for n in (3, 4):
            # The labels topic grows with the input: it stays co-partitioned.
            grow(s.kafka, [t.labels, t.input], n)
            grown = time.monotonic()
            more = batch_of(s.rows, f"g{n}", range(n))
            produce_to(s.kafka, t.input, {p: values for p, (_, values) in more.items()})
            new_ids, _ = more[n - 1]
            all_ids += [i for ids, _ in more.values() for i in ids]
            last = output.wait_for_all(
                new_ids, SERVE_WITHIN_S, f"the events of new partition {n - 1}"
            )
            served_s[n] = last - grown
        output.wait_for_all(all_ids, 60, "every event")
        membership = wait_for(
            lambda: stable_on(scrape(config), 4), timeout=30, what="stable on 4 partitions"
        )
        end = time.monotonic() + 1.0  # anything published twice shows up by now
        while time.monotonic() < end:
            output.read()
    finally:
        worker.stop()
        output.close()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.text()
    figures = ", ".join(f"{n - 1}->{n}: {s:.1f} s" for n, s in served_s.items())
    duplicated = sum(c - 1 for c in output.seen.values())
    print(f"{library} {guarantee}: new partitions served in {figures}; {duplicated} duplicated")
    print(f"{library} {guarantee}: membership at the end {membership}")
    # Three assignments at least (2, 3 and 4 partitions); kafka-python counts generations,
    # librdkafka the assignments received.
    assert membership["streamfuse_group_generation"] >= 3
    assert all(s < SERVE_WITHIN_S for s in served_s.values())
    assert set(output.seen) == set(all_ids), "events lost"
    if guarantee == "exactly_once":
        assert duplicated == 0, f"{duplicated} predictions published twice"


def test_an_input_grown_without_its_labels_topic_is_named_in_a_warning_and_a_metric(
    scenario: Callable[..., Scenario], library: str
) -> None:
    s = scenario(partitions=1, group="nolabels")
    t = s.topics
    config = s.config(kafka={"metadata_refresh_s": REFRESH_S})
    output = Output(s.kafka, t.output, "read_uncommitted")
    worker = s.worker(config, "worker.log")
    try:
        worker.wait_assigned(timeout=120)
        assert scrape(config).get(("streamfuse_labels_partitions_missing", "")) == 0
        grow(s.kafka, [t.input], 2)  # the labels topic stays at 1
        more = batch_of(s.rows, "nl", range(2))
        produce_to(s.kafka, t.input, {p: values for p, (_, values) in more.items()})
        output.wait_for_all(more[1][0], SERVE_WITHIN_S, "the events of new partition 1")
        wait_for(
            lambda: scrape(config).get(("streamfuse_labels_partitions_missing", "")) == 1,
            timeout=30,
            what="the missing labels partition counted",
        )
    finally:
        worker.stop()
        output.close()
    warnings = [line for line in worker.text().splitlines() if "has no partition 1" in line]
    print(f"{library}: {warnings[:1]}")
    assert warnings and t.labels in warnings[0]
