"""Drift cost per 512-event batch: :meth:`worker.drift.DriftMonitor.observe` alone.

``python -m benchmarks drift [--repeats 300] [--json out.json]``: the bench's data
shape (32 float features, 2 classes; ``make_classification``, seed 0), a reference profile
from 3,000 rows, and the outputs of 3 models and 7 strategies (the bench's ensemble and the
strategies ``streamfuse train`` fits) as random probabilities; each 512-row batch is counted
into the rolling window and every statistic and gauge is computed and set, as the worker
does after publishing a batch. Median and 10th-90th percentile ms per batch (wall clock), and
the median CPU time of the calling thread (what a loaded machine does not inflate), for
windows of 1,000 (the default) and 10,000 events, with and without the gauges.

``python -m benchmarks drift --worker [--rounds 3] [--events 60000]`` measures what the
issue asks of the whole worker instead: ``python -m benchmarks``'s at_least_once saturation run
(its models, store and config, one broker from ``dev/kafka`` on ``--kafka-port``), with drift
on and off in alternating rounds for each Kafka library, and the ratio on / off of each pair.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from worker.drift import DriftMonitor, feature_reference, output_references
from worker.metrics import Metrics

__all__ = ["main", "measure"]

MODELS = ["rf", "hgb", "mlp"]
STRATEGIES = [
    "soft_vote", "hard_vote", "weighted_average", "weighted_sum", "stacking", "select_best",
    "hedge",
]  # fmt: skip


def _probabilities(rng: np.random.Generator, n: int) -> np.ndarray:
    p = rng.random(n)
    return np.column_stack([p, 1 - p])


def measure(repeats: int = 300, window: int = 1000, gauges: bool = True) -> dict[str, Any]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=3000 + 512 * 8, n_features=32, random_state=0)
    rng = np.random.default_rng(0)
    X_ref, X_live = X[:3000], X[3000:]
    P = np.stack([_probabilities(rng, 3000) for _ in MODELS])
    outputs = output_references(
        "classification", P, MODELS, {s: _probabilities(rng, 3000) for s in STRATEGIES}, y[:3000]
    )
    metrics = Metrics(CollectorRegistry()) if gauges else None
    names = [str(j) for j in range(32)]
    monitor = DriftMonitor(feature_reference(X_ref), names, outputs, MODELS, window, 200, metrics)
    batches = [X_live[i * 512 : (i + 1) * 512] for i in range(8)]
    P_live = np.stack([_probabilities(rng, 512) for _ in MODELS])
    strategy_out = {s: _probabilities(rng, 512) for s in STRATEGIES}
    available = np.ones(len(MODELS), dtype=bool)
    for batch in batches:  # fill the window
        monitor.observe(batch, P_live, available, strategy_out)
    times, cpu = [], []
    for i in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        monitor.observe(batches[i % 8], P_live, available, strategy_out)
        cpu.append((time.thread_time() - start_cpu) * 1e3)
        times.append((time.perf_counter() - start) * 1e3)
    deciles = statistics.quantiles(times, n=10)
    return {
        "window": window,
        "gauges": gauges,
        "median_ms": statistics.median(times),
        "p10_ms": deciles[0],
        "p90_ms": deciles[-1],
        "median_cpu_ms": statistics.median(cpu),
    }


def measure_worker(
    rounds: int, n_events: int, port: int, libraries: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Events/s of the at_least_once worker with drift on, then off, ``rounds`` times."""
    import tempfile
    import uuid
    from contextlib import ExitStack
    from dataclasses import replace

    from kafka import KafkaAdminClient

    from benchmarks.broker import QUICK, Topics, broker, fill_gated, say
    from benchmarks.harness import Run, run_workers
    from benchmarks.models import build_store, saturation_events

    plan = replace(QUICK, n_events=n_events)
    rows_out: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="streamfuse-drift-ab-") as tmp,
        broker(None, port) as bootstrap,
    ):
        workdir = Path(tmp)
        store = workdir / "store"
        store.mkdir()
        say(f"training {', '.join(plan.models)} with the drift reference profile")
        rows = build_store(store, plan.seed, models=plan.models)
        keys, values = saturation_events(rows, n_events)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamfuse-drift-ab")
        topics = Topics(admin, uuid.uuid4().hex[:8])
        with ExitStack() as cleanup:
            cleanup.callback(admin.close)
            cleanup.callback(topics.delete)
            run = Run(bootstrap, admin, topics, store, workdir, plan, rows)
            run.dead_letter = topics.make("dlq")
            for r in range(1, rounds + 1):
                for library in libraries:
                    eps = {}
                    for drift in (True, False):
                        role = f"r{r}-{library[:2]}-{'on' if drift else 'off'}"
                        filled = fill_gated(bootstrap, topics.make(f"{role}-in"), keys, values)
                        cleanup.callback(filled.close)
                        eps[drift] = run_workers(
                            run, role, filled, library=library, drift=drift
                        ).eps
                        say(f"round {r}, {library}, {role}: {eps[drift]:,.0f} events/s")
                    rows_out.append({
                        "round": r, "library": library, "on_eps": eps[True], "off_eps": eps[False],
                        "ratio": eps[True] / eps[False],
                    })  # fmt: skip
    return rows_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks drift")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help="the whole worker, drift on vs off")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--kafka-port", type=int, default=39092)
    parser.add_argument("--libraries", default="kafka-python,confluent-kafka")
    args = parser.parse_args(argv)
    if args.worker:
        ab = measure_worker(
            args.rounds, args.events, args.kafka_port, tuple(args.libraries.split(","))
        )
        lines = [
            f"| {r['round']} | {r['library']} | {r['on_eps']:,.0f} | {r['off_eps']:,.0f} | "
            f"{r['ratio']:.2f} |"
            for r in ab
        ]
        return _report(
            "| round | library | drift on ev/s | drift off ev/s | on / off |", lines, ab, args.json
        )
    rows = [
        measure(args.repeats, window, gauges)
        for window in (1000, 10_000)
        for gauges in (True, False)
    ]
    lines = [
        f"| {r['window']:,} | {'yes' if r['gauges'] else 'no'} | {r['median_ms']:.2f} | "
        f"{r['p10_ms']:.2f}-{r['p90_ms']:.2f} | {r['median_cpu_ms']:.2f} |"
        for r in rows
    ]
    header = "| window | gauges | median ms / 512 events | p10-p90 ms | median CPU ms |"
    return _report(header, lines, rows, args.json)


def _report(header: str, lines: list[str], rows: list[dict[str, Any]], out: Path | None) -> int:
    """Print a Markdown table (right-aligned but for text columns) and save ``rows`` as JSON."""
    print(header)
    print(
        "|"
        + "|".join(
            "---" if "library" in c or "gauges" in c else "---:"
            for c in header.strip("|").split("|")
        )
        + "|"
    )
    print("\n".join(lines))
    if out is not None:
        out.write_text(json.dumps(rows, indent=1))
    return 0
