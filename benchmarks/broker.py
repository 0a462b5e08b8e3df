"""The Kafka side of ``python -m benchmarks``: the broker, gated topic fills, output timestamps, and
the worker as a subprocess with its log and ``/metrics``. The phases are in
:mod:`benchmarks.harness`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.models import (
    ACTIVE_STRATEGY,
    MODEL_NAMES,
    SHADOW_STRATEGIES,
)
from worker.errors import WorkerError

__all__ = [
    "ASSIGNED",
    "PARTITIONS",
    "QUICK",
    "BenchError",
    "BenchPlan",
    "Filled",
    "Topics",
    "WorkerProcess",
    "broker",
    "events_per_second",
    "fill_gated",
    "output_stamps",
    "say",
    "wait_committed",
    "wait_until",
    "worker_config",
]

REPO = Path(__file__).resolve().parents[1]
DEV_KAFKA = REPO / "dev" / "kafka"
PARTITIONS = 2
ASSIGNED = "partitions assigned: "


class BenchError(WorkerError, RuntimeError):
    """The benchmark could not run to the end (broker, worker process, missing outputs)."""


@dataclass(frozen=True)
class BenchPlan:
    """What one run measures; ``quick`` and ``full`` differ only in sizes."""

    n_events: int = 50_000
    n_naive: int = 300
    latency_s: float = 20.0
    latency_warmup_s: float = 2.0
    latency_fractions: tuple[float, ...] = (0.1, 0.5)  # of saturation, after 50 events/s
    profile_repeats: int = 20
    batch_events: int = 512
    max_wait_ms: int = 20
    seed: int = 0
    models: tuple[str, ...] = MODEL_NAMES


QUICK = BenchPlan(
    n_events=3_000,
    n_naive=100,
    latency_s=4.0,
    latency_warmup_s=1.0,
    latency_fractions=(0.5,),
    profile_repeats=5,
)


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- broker and topics ------------------------------------------------------------------------


@contextmanager
def broker(bootstrap: str | None, port: int, brokers: int = 1) -> Iterator[str]:
    """``bootstrap`` as given; else ``dev/kafka`` on ``port`` (stopped after if started here),
    a cluster of ``brokers`` nodes (on ``port`` and the ports above it) when more than one."""
    if bootstrap:
        yield bootstrap
        return
    if not DEV_KAFKA.is_file():
        raise BenchError(f"{DEV_KAFKA} not found: give --bootstrap HOST:PORT of a running broker")
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_BROKERS": str(brokers)}
    already_up = subprocess.run([DEV_KAFKA, "status"], env=env, capture_output=True).returncode == 0
    out = subprocess.run([DEV_KAFKA, "start"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise BenchError(f"dev/kafka start failed:\n{out.stdout}\n{out.stderr}")
    try:
        yield out.stdout.strip().splitlines()[-1]
    finally:
        if not already_up:
            subprocess.run([DEV_KAFKA, "stop"], env=env, capture_output=True)


@dataclass
class Topics:
    """Uniquely named topics of one run, created on demand and deleted at the end."""

    admin: KafkaAdminClient
    run_id: str
    created: list[str] = field(default_factory=list)

    def make(
        self, role: str, partitions: int = PARTITIONS, replication: int = 1, **configs: str
    ) -> str:
        """``replication`` -1: the brokers' default.replication.factor (3 on a cluster)."""
        name = f"bench-{self.run_id}-{role}"
        self.admin.create_topics([NewTopic(name, partitions, replication, topic_configs=configs)])
        self.admin.wait_for_topics([name], timeout_ms=30_000)
        self.created.append(name)
        return name

    def delete(self) -> None:
        try:
            self.admin.delete_topics(self.created)
        except KafkaError:
            pass  # best effort: they are uniquely named and harmless


@dataclass
class Filled:
    """A topic holding the events in a transaction left open: invisible to ``read_committed``
    readers (the worker, the ceiling loop) until :meth:`open` commits it."""

    topic: str
    ends: dict[TopicPartition, int]  # each partition's offset after its last event
    gate: KafkaProducer
    closed: bool = False

    @property
    def n_events(self) -> int:
        return sum(self.ends.values())

    def open(self) -> None:
        self.gate.commit_transaction()
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.gate.close(timeout=10)


def fill_gated(
    bootstrap: str, topic: str, keys: Sequence[bytes], values: Sequence[bytes]
) -> Filled:
    gate = KafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"{topic}-gate",
        transaction_timeout_ms=600_000,
        linger_ms=5,
        batch_size=256 * 1024,
    )
    gate.init_transactions()
    gate.begin_transaction()
    futures = [gate.send(topic, key=k, value=v) for k, v in zip(keys, values, strict=True)]
    gate.flush()
    ends: dict[TopicPartition, int] = {}
    for future in futures:
        meta = future.get(timeout=60)
        tp = TopicPartition(meta.topic, meta.partition)
        ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
    return Filled(topic, ends, gate)


def wait_committed(
    admin: KafkaAdminClient,
    group: str,
    ends: dict[TopicPartition, int],
    timeout_s: float,
    check: Callable[[], None] = lambda: None,
) -> None:
    """Until ``group`` has committed every partition up to ``ends``; ``check`` raises on trouble."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            offsets = admin.list_group_offsets(group).get(group, {})
        except KafkaError:
            offsets = {}
        if all(tp in offsets and (offsets[tp].offset or 0) >= end for tp, end in ends.items()):
            return
        check()
        if time.monotonic() > deadline:
            raise BenchError(f"group {group} did not commit {ends} within {timeout_s:.0f}s")
        time.sleep(0.1)


def output_stamps(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout_s: float = 120,
    partitions: int = PARTITIONS,
) -> np.ndarray:
    """CreateTime (epoch ms) of the first ``expected`` committed records of ``topic``."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_bytes=50 << 20,
        max_partition_fetch_bytes=8 << 20,
    )
    stamps: list[int] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while len(stamps) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                stamps.extend(r.timestamp for r in records)
    finally:
        consumer.close()
    if len(stamps) < expected:
        raise BenchError(f"{topic}: {len(stamps)} outputs, expected {expected}")
    return np.asarray(stamps, dtype=np.float64)


def events_per_second(stamps_ms: np.ndarray) -> float:
    """Events over the span from the first output to the last (at least 1 ms)."""
    span_s = max(float(stamps_ms.max() - stamps_ms.min()), 1.0) / 1000
    return len(stamps_ms) / span_s


# -- the worker as a subprocess ---------------------------------------------------------------


def worker_config(
    bootstrap: str,
    store: Path,
    topics: dict[str, str],
    group: str,
    plan: BenchPlan,
    guarantee: str = "at_least_once",
    instance: int = 0,
    metrics_port: int = 0,
    library: str = "kafka-python",
    drift: bool = True,
    transaction_interval_ms: int = 0,
) -> dict[str, Any]:
    """``drift`` False: the worker ignores the store's reference profile (for the A/B of
    ``python -m benchmarks drift --worker``)."""
    return {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": group,
            "processing_guarantee": guarantee,
            "instance_id": str(instance),
            "library": library,
            "transaction_interval_ms": transaction_interval_ms,
        },
        "topics": {**topics, "labels": None},
        "batch": {"max_events": plan.batch_events, "max_wait_ms": plan.max_wait_ms},
        "store": str(store),
        "models": [{"name": n} for n in plan.models],
        "strategy": {"name": ACTIVE_STRATEGY},
        "shadow_strategies": [{"name": n} for n in SHADOW_STRATEGIES],
        "on_model_error": {"policy": "renormalize", "min_models": 2, "timeout_ms": 1000},
        "metrics": {"enabled": metrics_port > 0, "host": "127.0.0.1", "port": metrics_port},
        "drift": {"enabled": drift},
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    """``streamfuse run`` in a child process, its log in a file, its /metrics on a free port."""

    def __init__(self, workdir: Path, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.metrics_port = _free_port()
        metrics = {"enabled": True, "host": "127.0.0.1", "port": self.metrics_port}
        config = {**config, "metrics": metrics}
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run", "--config", str(self.config_path)],
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def check(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise BenchError(f"worker {self.name} exited with {self.proc.returncode}:\n{tail}")

    def assigned(self) -> bool:
        self.check()
        return self.assignment() is not None

    def assignment(self) -> list[str] | None:
        """The partitions of the latest assignment in the log, or None before the first one."""
        lines = [
            ln for ln in self.log_path.read_text(errors="replace").splitlines() if ASSIGNED in ln
        ]
        if not lines:
            return None
        listed = lines[-1].split(ASSIGNED, 1)[1].strip()
        return [] if listed == "none" else listed.split(", ")

    def peak_rss_mib(self) -> float:
        """VmHWM: the resident set's high-water mark so far, in MiB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise BenchError("no VmHWM in /proc/PID/status (Linux only)")

    def metrics(self) -> dict[str, float]:
        """Means of the worker's histograms: batch size, batch time, predict and combine times."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, float] = defaultdict(float)
        wanted = {
            "streamfuse_batch_size": "batch_size",
            "streamfuse_batch_processing_seconds": "batch_processing_ms",
            "streamfuse_model_predict_seconds": "predict_ms",
            "streamfuse_combine_seconds": "combine_ms",
        }
        for family in text_string_to_metric_families(text):
            short = wanted.get(family.name)
            if short is None:
                continue
            for sample in family.samples:
                label = sample.labels.get("model") or sample.labels.get("strategy")
                key = f"{short}.{label}" if label else short
                if sample.name.endswith("_sum"):
                    sums[key] += sample.value
                elif sample.name.endswith("_count"):
                    counts[key] += sample.value
        scale = {"batch_size": 1.0}
        return {
            k: sums[k] / counts[k] * scale.get(k, 1000.0) for k in sorted(sums) if counts[k] > 0
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        self._log.close()


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.02)
