"""Scale-out, measured: N worker processes in one group on an 8-partition topic, against one
broker or a three-node cluster (``dev/kafka start --brokers 3``), and a worker killed with
SIGKILL and replaced while the others run, with and without static group membership.

    python -m benchmarks scale [--target single|cluster|both] [--workers 1,2,4]
        [--events N] [--takeover-rate R] [--json FILE] [--workdir DIR]

Throughput: the events wait in a topic behind an open transaction until every worker holds
partitions, then events/s from the first output to the last (the harness's own
measure), and how the 8 partitions spread over the processes. Takeover: two workers
read a stream at a steady rate; one is SIGKILLed and a replacement with the same
``instance_id`` started at once; ``takeover_s`` is the time from the kill to the first output of
one of its partitions (the output topic stamps records with the broker's append time), and
``taken_by`` says whether the survivor (after the group coordinator dropped the dead member:
``session.timeout.ms``) or the replacement (static membership: ``group.instance.id`` lets it
step into the dead member's place without a rebalance) took them. Nothing may be lost.
A benchmark, not a test: run it on a quiet machine; figures in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from benchmarks.broker import (
    BenchPlan,
    Topics,
    WorkerProcess,
    broker,
    events_per_second,
    fill_gated,
    output_stamps,
    say,
    wait_committed,
    wait_until,
    worker_config,
)
from benchmarks.models import build_store, event_value

PARTITIONS = 8
SESSION_TIMEOUT_MS = 10_000


class Target:
    """One broker setup: its address, topics and the store every worker serves."""

    def __init__(self, name: str, bootstrap: str, store: Path, workdir: Path, plan: BenchPlan):
        self.name, self.bootstrap, self.store, self.workdir, self.plan = (
            name,
            bootstrap,
            store,
            workdir,
            plan,
        )
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-scale")
        self.topics = Topics(self.admin, uuid.uuid4().hex[:8])
        self.dead_letter = self.topics.make("dlq", 1, -1)

    def topic(self, role: str, **configs: str) -> str:
        return self.topics.make(role, PARTITIONS, -1, **configs)

    def worker(self, role: str, input_topic: str, output: str, instance: int, static: bool):
        topics = {"input": input_topic, "output": output, "dead_letter": self.dead_letter}
        group = f"bench-{self.topics.run_id}-{role}"
        config = worker_config(
            self.bootstrap, self.store, topics, group, self.plan, instance=instance
        )
        consumer: dict[str, Any] = {
            "session_timeout_ms": SESSION_TIMEOUT_MS,
            "heartbeat_interval_ms": 1000,
        }
        if static:
            consumer["group_instance_id"] = f"{group}-{instance}"
        config["kafka"]["consumer"] = consumer
        name = f"{self.name}-{role}-{instance}-{time.monotonic_ns() % 10**6}"
        return WorkerProcess(self.workdir, name, config), group

    def close(self) -> None:
        self.topics.delete()
        self.admin.close()


def run_throughput(t: Target, n_workers: int, keys: list[bytes], values: list[bytes]) -> dict:
    role = f"scale{n_workers}"
    filled = fill_gated(t.bootstrap, t.topic(f"{role}-in"), keys, values)
    output = t.topic(f"{role}-out")
    procs: list[WorkerProcess] = []
    try:
        group = ""
        for i in range(n_workers):
            proc, group = t.worker(role, filled.topic, output, i, static=False)
            procs.append(proc)

        def check() -> None:
            for p in procs:
                p.check()

        def sharing() -> bool:
            check()
            held = [len(p.assignment() or []) for p in procs]
            return min(held) >= 1 and sum(held) == PARTITIONS

        wait_until(sharing, 240, f"{n_workers} worker(s) sharing {PARTITIONS} partitions")
        spread = sorted(len(p.assignment() or []) for p in procs)
        filled.open()
        wait_committed(t.admin, group, filled.ends, 120 + len(values) / 100, check)
    finally:
        filled.close()
        for p in procs:
            p.stop()
    stamps = output_stamps(t.bootstrap, output, filled.n_events, partitions=PARTITIONS)
    return {"events": filled.n_events, "eps": round(events_per_second(stamps)), "spread": spread}


class Tail:
    """Output records with their append time and source partition (``streamfuse.source``)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        self.seen: list[tuple[float, int, str]] = []  # (append time s, source partition, id)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=200).values():
                for r in records:
                    source = dict(r.headers).get("streamfuse.source", b"::-1").decode()
                    part = int(source.rsplit(":", 2)[1])
                    self.seen.append((r.timestamp / 1000, part, orjson.loads(r.value)["id"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()


def run_takeover(t: Target, static: bool, rate: float, X: list[list[float]]) -> dict[str, Any]:
    """Two workers at ``rate`` events/s; SIGKILL one and start its replacement at once."""
    role = "static" if static else "dynamic"
    input_topic = t.topic(f"{role}-in")
    output = t.topic(f"{role}-out", **{"message.timestamp.type": "LogAppendTime"})
    n = int(rate * 240)  # an upper bound: input stops once the replacement is in
    ids = [f"{role}-{i}" for i in range(n)]
    now = time.time()
    values = [event_value(ids[i], X[i % len(X)], now) for i in range(n)]
    tail = Tail(t.bootstrap, output)
    stop = threading.Event()
    sent: list[int] = []
    procs = [t.worker(role, input_topic, output, i, static)[0] for i in range(2)]
    replacement: WorkerProcess | None = None

    def produce() -> None:
        producer = KafkaProducer(bootstrap_servers=t.bootstrap, linger_ms=5, acks="all")
        started = time.monotonic()
        for i, (key, value) in enumerate(zip(ids, values, strict=True)):
            if stop.is_set():
                break
            producer.send(input_topic, key=key.encode(), value=value)
            ahead = started + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
            sent[:] = [i + 1]
        producer.flush()
        producer.close()

    feeder = threading.Thread(target=produce, daemon=True)
    try:
        wait_until(
            lambda: (
                all(p.assigned() for p in procs)
                and sum(len(p.assignment() or []) for p in procs) == PARTITIONS
            ),
            240,
            "two workers sharing the partitions",
        )
        feeder.start()
        wait_until(lambda: len(tail.seen) >= rate * 5, 120, "output flowing")
        victim = procs[1]
        lost_parts = {int(tp.rsplit(":", 1)[1]) for tp in victim.assignment() or []}
        killed_at = time.time()
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        replacement, _ = t.worker(role, input_topic, output, 1, static)
        wait_until(
            lambda: any(ts > killed_at and p in lost_parts for ts, p, _ in list(tail.seen)),
            180,
            "the killed worker's partitions flowing again",
        )
        resumed_at = min(ts for ts, p, _ in list(tail.seen) if ts > killed_at and p in lost_parts)
        held = {int(tp.rsplit(":", 1)[1]) for tp in procs[0].assignment() or []}
        taken_by = "survivor" if lost_parts & held else "replacement"
        wait_until(lambda: replacement is not None and replacement.assigned(), 180, "replacement")
        survivor_parts = procs[0].assignment() or []
        time.sleep(3)
        stop.set()
        feeder.join(60)
        n_sent = sent[0] if sent else 0
        wanted = set(ids[:n_sent])
        wait_until(lambda: wanted <= {i for _, _, i in list(tail.seen)}, 120, "every id out")
        time.sleep(2)  # stragglers: duplicates come after the last new id, if at all
        counts = Counter(i for _, _, i in tail.seen)
        return {
            "static_membership": static,
            "events_sent": n_sent,
            "lost": len(wanted - set(counts)),
            "duplicates": sum(c - 1 for c in counts.values()),
            "takeover_s": round(resumed_at - killed_at, 1),
            "taken_by": taken_by,
            "survivor_holds_after": len(survivor_parts),
            "session_timeout_ms": SESSION_TIMEOUT_MS,
        }
    finally:
        stop.set()
        tail.close()
        for p in [*procs, *([replacement] if replacement else [])]:
            p.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--target", choices=["single", "cluster", "both"], default="both")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--takeover-rate", type=float, default=300.0)
    parser.add_argument("--no-takeover", action="store_true")
    parser.add_argument("--kafka-port", type=int, default=39092, help="single node's port")
    parser.add_argument("--cluster-port", type=int, default=39192, help="cluster's base port")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    plan = BenchPlan(models=("rf", "hgb", "mlp"))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    say(f"training the models into {store}")
    rows = build_store(store, plan.seed, models=plan.models)
    X = np.resize(rows, (args.events, rows.shape[1])).tolist()
    now = time.time()
    keys = [f"e-{i}".encode() for i in range(args.events)]
    values = [event_value(f"e-{i}", X[i], now) for i in range(args.events)]
    result: dict[str, Any] = {"cpus": os.cpu_count(), "loadavg_1m_at_start": os.getloadavg()[0]}
    targets = ["single", "cluster"] if args.target == "both" else [args.target]
    for name in targets:
        with ExitStack() as stack:
            bootstrap = stack.enter_context(
                broker(None, args.cluster_port, 3)
                if name == "cluster"
                else broker(None, args.kafka_port)
            )
            t = Target(name, bootstrap, store, workdir, plan)
            stack.callback(t.close)
            figures: dict[str, Any] = {}
            for n in (int(w) for w in args.workers.split(",")):
                say(f"{name}: {n} worker(s), {args.events:,} events, {PARTITIONS} partitions")
                figures[f"workers_{n}"] = run_throughput(t, n, keys, values)
                say(f"{name}: {figures[f'workers_{n}']}")
            if not args.no_takeover:
                for static in (False, True):
                    key = f"takeover_{'static' if static else 'dynamic'}"
                    say(f"{name}: takeover, static membership {static}")
                    figures[key] = run_takeover(t, static, args.takeover_rate, X)
                    say(f"{name}: {figures[key]}")
            result[name] = figures
    result["loadavg_1m_at_end"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0
