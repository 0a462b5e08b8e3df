"""End-to-end latency around a hot swap, with the new version warmed first and without.

``python -m benchmarks swap [--rate 100] [--window 10] [--rounds 2] [--json out.json]``: the
bench's store (``rf``, ``hgb`` and the torch ``mlp``, :func:`benchmarks.models.build_store`),
one kafka-python worker at a time on a broker from ``dev/kafka`` (``--kafka-port``, default
39092 as the harness's), events
produced at ``--rate`` by a librdkafka producer. After ``--window`` seconds of steady serving
(and 3 s of start), a new ``mlp`` version (trained with another seed before the run starts) is
published and promoted; the worker prepares it on its reload thread and swaps it in. The
swap's moment is the first prediction served by the new version; the p99 of end-to-end latency
of the events sent in the ``--window`` seconds after it is compared with the window before.
Each round runs the worker with ``reload.warmup`` on, then off (the new version swapped in
cold), on fresh topics. Three windows of sent events are reported: the ``--window`` seconds
before the publish (steady serving), the preparation (publish to swap: the new version loaded
in a trial child, the strategies refit, the warm-up), and the ``--window`` seconds after the
swap. The issue's target: p99 after / p99 before <= 1.5 with the warm-up on.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.broker import QUICK, Topics, WorkerProcess, broker, say, wait_until
from benchmarks.models import MLP_SPEC, build_store, event_value, publish_common, training_rows
from model_store import ModelStore
from worker.tools.train import fit_torch

__all__ = ["main", "measure"]

START_S = 3.0  # served before the "before" window opens: start-up's first batches left out
PREPARE_S = 20.0  # room for the reload's preparation (a trial child loads the new version)


def _candidates(seed: int, n: int) -> list[Any]:
    """``n`` torch MLPs of the bench's spec, each trained with its own seed, as new versions."""
    X_tr, y_tr = training_rows(seed)
    return [fit_torch(MLP_SPEC, X_tr, [("mlp", y_tr)], seed + 1 + k, epochs=20) for k in range(n)]


def _one_swap(
    bootstrap: str,
    topics: Topics,
    workdir: Path,
    publish: Callable[[], int],
    rows: np.ndarray,
    config: dict[str, Any],
    rate: float,
    window_s: float,
    role: str,
) -> dict[str, float]:
    from benchmarks.rdkafka import paced_produce, read_outputs

    input_topic, output = topics.make(f"{role}-in"), topics.make(f"{role}-out")
    config = {**config, "topics": {**config["topics"], "input": input_topic, "output": output}}
    config["kafka"] = {**config["kafka"], "group_id": f"bench-{topics.run_id}-{role}"}
    worker = WorkerProcess(workdir, role, config)
    received: dict[str, float] = {}
    created: dict[str, float] = {}
    version: dict[str, int] = {}
    stop = threading.Event()

    def on_message(value: bytes, create_time_s: float, now: float) -> None:
        doc = orjson.loads(value)
        received[doc["id"]] = now
        created[doc["id"]] = create_time_s
        version[doc["id"]] = doc["models"]["mlp"]["version"]

    reader = threading.Thread(target=read_outputs, args=(bootstrap, output, stop, on_message))
    n = int(rate * (START_S + 2 * window_s + PREPARE_S))
    X = np.resize(rows, (n, rows.shape[1])).tolist()
    ids = [f"{role}-{i}" for i in range(n)]
    published: list[tuple[float, int]] = []
    swap = threading.Timer(START_S + window_s, lambda: published.append((time.time(), publish())))
    try:
        wait_until(worker.assigned, 120, f"the {role} worker's partition assignment")
        reader.start()
        swap.start()
        sent_at = paced_produce(
            bootstrap, input_topic, ids, lambda i, ts: event_value(ids[i], X[i], ts), rate
        )
        wait_until(lambda: len(received) >= n, 60, f"{n} predictions of {role}")
    finally:
        swap.cancel()
        stop.set()
        worker.stop()
        if reader.is_alive():
            reader.join(10)
    [(published_at, new)] = published
    served_new = [created[i] for i in ids if version[i] == new]
    if not served_new:
        raise RuntimeError(f"{role}: the new mlp version {new} never served")
    swapped_at = min(served_new)
    if sent_at[-1] < swapped_at + window_s:
        raise RuntimeError(f"{role}: the swap came {swapped_at - published_at:.1f} s after publish")
    e2e = (np.array([received[i] for i in ids]) - sent_at) * 1000

    def p99(start: float, stop: float) -> float:
        return float(np.percentile(e2e[(sent_at >= start) & (sent_at < stop)], 99))

    baseline = p99(published_at - window_s, published_at)
    after = p99(swapped_at, swapped_at + window_s)
    return {
        "p99_baseline_ms": baseline,
        "p99_preparing_ms": p99(published_at, swapped_at),
        "p99_after_ms": after,
        "p99_before_swap_ms": p99(swapped_at - window_s, swapped_at),
        "ratio": after / baseline,
        "max_after_ms": float(e2e[(sent_at >= swapped_at) & (sent_at < swapped_at + 1)].max()),
        "preparing_s": swapped_at - published_at,
    }


def measure(port: int, rate: float, window_s: float, rounds: int, seed: int = 0) -> list[dict]:
    """``rounds`` pairs of swaps (warm-up on, then off); one row per swap."""
    from kafka import KafkaAdminClient

    from benchmarks.broker import worker_config

    results: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="streamfuse-swap-") as tmp,
        broker(None, port) as bootstrap,
    ):
        workdir = Path(tmp)
        say("training rf, hgb, mlp and the candidate mlp versions")
        rows = build_store(workdir / "store", seed)
        candidates = _candidates(seed, 2 * rounds)
        store = ModelStore(workdir / "store")
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamfuse-swap")
        topics = Topics(admin, uuid.uuid4().hex[:8])
        with ExitStack() as cleanup:
            cleanup.callback(admin.close)
            cleanup.callback(topics.delete)
            dead_letter = topics.make("dlq")
            names = {"input": "", "output": "", "dead_letter": dead_letter}
            for r in range(rounds):
                for k, warmup in enumerate((True, False)):
                    config = worker_config(bootstrap, workdir / "store", names, "", QUICK)
                    config["reload"] = {"interval_s": 0.5, "warmup": warmup}
                    role = f"r{r + 1}-{'warm' if warmup else 'cold'}"
                    publish = partial(
                        store.publish, "mlp", candidates[2 * r + k], framework="torch",
                        output_kind="proba", spec=MLP_SPEC, **publish_common(),
                    )  # fmt: skip
                    row = _one_swap(
                        bootstrap, topics, workdir, publish, rows, config, rate, window_s, role
                    )
                    row.update(round=r + 1, warmup=warmup)
                    say(
                        f"{role}: p99 {row['p99_baseline_ms']:.1f} ms before the publish, "
                        f"{row['p99_preparing_ms']:.1f} while it is prepared "
                        f"({row['preparing_s']:.1f} s), {row['p99_after_ms']:.1f} after the swap "
                        f"({row['ratio']:.2f}x); max in the first second "
                        f"{row['max_after_ms']:.1f}"
                    )
                    results.append(row)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks swap", description=__doc__)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--window", type=float, default=10.0, help="seconds before and after")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kafka-port", type=int, default=39092, help="as python -m benchmarks")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = measure(args.kafka_port, args.rate, args.window, args.rounds)
    print(
        "| round | warm-up | p99 before the publish | p99 while preparing | p99 after the swap "
        "| after / before | max, first second after |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['round']} | {'on' if row['warmup'] else 'off'} | "
            f"{row['p99_baseline_ms']:.1f} ms | {row['p99_preparing_ms']:.1f} ms "
            f"({row['preparing_s']:.1f} s) | {row['p99_after_ms']:.1f} ms | {row['ratio']:.2f} | "
            f"{row['max_after_ms']:.1f} ms |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0
