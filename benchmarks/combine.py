"""Benchmark of ``combine`` per strategy: ``python -m benchmarks combine [--repeats N]``.

Fits every registered strategy on synthetic class probabilities, then times ``combine`` on
``P`` of shape ``(n_models, n_events, n_outputs)`` (default ``(3, 1024, 10)``) and prints the
median and best time per call. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from combiners._registry import available_combiners, get_combiner

__all__ = ["main", "run_benchmark"]

#: Parameters that keep fitting quick; combine cost does not depend on them.
BENCH_PARAMS: dict[str, dict[str, Any]] = {"multitask": {"epochs": 20}}


def run_benchmark(
    n_models: int = 3,
    n_events: int = 1024,
    n_outputs: int = 10,
    repeats: int = 200,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """Seconds per ``combine`` call for each strategy, as ``{name: (median, best)}``."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n_outputs), size=(n_models, n_events))
    y = rng.integers(0, n_outputs, n_events)
    results: dict[str, tuple[float, float]] = {}
    for name in names or available_combiners():
        combiner = get_combiner(name, **BENCH_PARAMS.get(name, {})).fit(P, y)
        combiner.combine(P)  # warm-up
        times = np.empty(repeats)
        for i in range(repeats):
            start = time.perf_counter()
            combiner.combine(P)
            times[i] = time.perf_counter() - start
        results[name] = (float(np.median(times)), float(times.min()))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints a table and returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks combine", description=__doc__)
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--events", type=int, default=1024)
    parser.add_argument("--outputs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = run_benchmark(args.models, args.events, args.outputs, args.repeats, args.seed)
    shape = (args.models, args.events, args.outputs)
    print(f"combine on P of shape {shape}, {args.repeats} calls")
    print(f"{'strategy':<18}{'median µs':>12}{'best µs':>12}")
    for name, (median, best) in results.items():
        print(f"{name:<18}{median * 1e6:>12.1f}{best * 1e6:>12.1f}")
    return 0
