"""Fan one batch out to every base model at once, isolating each model's failures.

Each model gets a thread of its own. scikit-learn's tree prediction and torch release the GIL,
so the models run in parallel with each other and with kafka-python's network thread. A model
that raises, returns the wrong shape or non-finite values, or misses the deadline is left out of
the batch (``available[m]`` is False, its rows of ``P`` are NaN); a model still busy with an
earlier batch that timed out is skipped rather than queued, so in-flight work stays bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import partial

import numpy as np

__all__ = ["WARM_BOUND_S", "Failure", "Fanout", "FanoutResult", "Submitted"]

#: How long start-up waits for a model's warm-up calls (:meth:`Fanout.warm`).
WARM_BOUND_S = 60.0

PredictFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Failure:
    model: str
    kind: str  # exception, timeout, busy, shape, nonfinite
    message: str


@dataclass
class FanoutResult:
    """``P`` of shape (n_models, n_events, n_outputs); ``seconds[m]`` is model m's predict time,
    ``started[m]`` when it began (``time.perf_counter``; 0: it did not return)."""

    P: np.ndarray
    available: np.ndarray
    failures: list[Failure]
    seconds: np.ndarray
    started: np.ndarray


@dataclass
class Submitted:
    """Models started on a batch; :meth:`Fanout.collect` waits for them."""

    futures: list[Future[tuple[np.ndarray, float, float]] | None]
    failures: list[Failure]
    n_events: int
    deadline: float


class Fanout:
    def __init__(self, names: Sequence[str], timeout_s: float, threads_per_model: int = 0) -> None:
        self.names = list(names)
        self.timeout_s = timeout_s
        init = partial(_limit_threads, threads_per_model) if threads_per_model > 0 else None
        self._pools = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{n}", initializer=init)
            for n in names
        ]
        # Each thread started (its initializer run: threadpoolctl reads every loaded library)
        # here, not inside the first batch's deadline.
        for pool in self._pools:
            pool.submit(_nothing).result()
        self._pending: list[Future[tuple[np.ndarray, float, float]] | None] = [None] * len(names)

    def warm(
        self, fns: Sequence[PredictFn], batches: Sequence[np.ndarray], bound_s: float = WARM_BOUND_S
    ) -> list[float | Exception]:
        """Run every model on each of ``batches`` on the thread that will run it (a runtime's
        per-thread state is set up on its first call there), with no deadline but ``bound_s``:
        per model, the seconds it took or what it raised. A model still running after
        ``bound_s`` is left to finish; until it does, batches find it busy."""
        futures = [
            [pool.submit(_timed, fn, X) for X in batches]
            for pool, fn in zip(self._pools, fns, strict=True)
        ]
        ends = time.monotonic() + bound_s
        took: list[float | Exception] = []
        for m, submitted in enumerate(futures):
            seconds = 0.0
            try:
                for future in submitted:
                    seconds += future.result(timeout=max(0.0, ends - time.monotonic()))[2]
            except FutureTimeout:
                self._pending[m] = submitted[-1]
                took.append(TimeoutError(f"still running after {bound_s:g}s"))
                continue
            except Exception as exc:  # the batch path counts a failing model; start-up goes on
                took.append(exc)
                continue
            took.append(seconds)
        return took

    def predict(self, fns: Sequence[PredictFn], X: np.ndarray, n_outputs: int) -> FanoutResult:
        """Run every model on ``X`` and wait for them (``submit`` then ``collect``)."""
        return self.collect(self.submit(fns, X), n_outputs)

    def submit(self, fns: Sequence[PredictFn], X: np.ndarray) -> Submitted:
        """Start every model on ``X`` and return at once; the deadline starts now."""
        futures: list[Future[tuple[np.ndarray, float, float]] | None] = []
        failures: list[Failure] = []
        for m, fn in enumerate(fns):
            pending = self._pending[m]
            if pending is not None and not pending.done():
                futures.append(None)
                failures.append(
                    Failure(self.names[m], "busy", "still running an earlier batch that timed out")
                )
                continue
            future = self._pools[m].submit(_timed, fn, X)
            self._pending[m] = future
            futures.append(future)
        return Submitted(futures, failures, X.shape[0], time.monotonic() + self.timeout_s)

    def collect(self, submitted: Submitted, n_outputs: int) -> FanoutResult:
        """Wait for the models started by :meth:`submit`, up to its deadline."""
        futures, n_events = submitted.futures, submitted.n_events
        n_models = len(futures)
        P = np.full((n_models, n_events, n_outputs), np.nan)
        available = np.zeros(n_models, dtype=bool)
        seconds = np.zeros(n_models)
        started = np.zeros(n_models)
        failures = list(submitted.failures)
        for m, fut in enumerate(futures):
            if fut is None:
                continue
            left = max(0.0, submitted.deadline - time.monotonic())
            try:
                out, started[m], took = fut.result(timeout=left)
            except FutureTimeout:
                failures.append(
                    Failure(self.names[m], "timeout", f"no result within {self.timeout_s:g}s")
                )
                continue
            except Exception as exc:  # a model's own error: isolate it, never crash the worker
                failures.append(Failure(self.names[m], "exception", f"{type(exc).__name__}: {exc}"))
                continue
            seconds[m] = took
            problem = _check(out, n_events, n_outputs)
            if problem is not None:
                kind, message = problem
                failures.append(Failure(self.names[m], kind, message))
                continue
            P[m] = out
            available[m] = True
        return FanoutResult(P, available, failures, seconds, started)

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)


_local = threading.local()


def _nothing() -> None:
    return None


def _limit_threads(n: int) -> None:
    """Runs once in each model thread: OpenMP's thread count is a per-thread setting, so a
    limit set in the main thread would not reach the models' own threads."""
    from threadpoolctl import threadpool_limits

    _local.limits = threadpool_limits(limits=n)  # kept for the thread's lifetime


def _timed(fn: PredictFn, X: np.ndarray) -> tuple[np.ndarray, float, float]:
    start = time.perf_counter()
    out = fn(X)
    return out, start, time.perf_counter() - start


def _check(out: object, n_events: int, n_outputs: int) -> tuple[str, str] | None:
    if not isinstance(out, np.ndarray):
        return "shape", f"returned {type(out).__name__}, not an array"
    if out.shape != (n_events, n_outputs):
        return "shape", f"returned shape {out.shape}, expected {(n_events, n_outputs)}"
    if out.dtype.kind not in "fiub":
        return "shape", f"returned dtype {out.dtype}, not numbers"
    if not np.isfinite(out).all():
        return "nonfinite", "returned NaN or infinite values"
    return None
