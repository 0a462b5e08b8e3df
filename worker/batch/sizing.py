"""Batches sized for a latency goal (``batch.target_latency_ms``).

Without a goal a batch closes at ``batch.max_events``, ``batch.max_wait_ms`` after its first
event, or (``batch.start_when_idle``) as soon as the models are free. With one,
:class:`BatchSizer` keeps an estimate of how long a batch of ``n`` events takes from its start
to its last prediction (``a + b * n``, least squares over the recent batches, the older ones
weighing less) and, from it:

- caps the batch at the largest size estimated to take at most the goal
  (:meth:`BatchSizer.limit`);
- without ``batch.start_when_idle``, waits for more events only as long as the wait plus that
  batch's estimate stays within the goal (:meth:`BatchSizer.wait_s`), so a light stream is not
  held back by ``max_wait_ms``. With it, a batch waits only while the models are busy, where a
  shorter wait would not start it sooner (it would only stop the polls): it keeps ``max_wait_ms``;
- lifts the cap while the consumer is behind: when two batches in a row were full at the cap,
  more events arrive than capped batches can keep up with, and batches grow to ``max_events``
  until one is smaller than the cap again. At saturation it therefore costs two smaller batches.

This is BentoML's dispatcher's rule (wait only while the wait plus the regressed batch time meets
the goal) with Triton's preference for the largest batch available when the models are free.
When the models keep up, a batch holds only what arrived while the one before ran, so the cap
binds only on bursts (it splits them); the figures are in benchmarks/README.md.
"""

from __future__ import annotations

__all__ = ["BatchSizer"]

DECAY = 0.9  # weight of the previous batches at each new one (about the last 10 count)
MIN_BATCHES = 3  # batches observed before the estimate is used
FULL_STREAK = 2  # batches in a row full at the cap: the consumer is behind


class BatchSizer:
    """The size and wait of the next batch, from the ``batch`` settings (``target_latency_ms``
    None: ``max_events`` and ``max_wait_ms``, always)."""

    def __init__(
        self,
        max_events: int,
        max_wait_ms: int,
        start_when_idle: bool = True,
        target_latency_ms: int | None = None,
    ) -> None:
        self.max_events = max_events
        self.max_wait_s = max_wait_ms / 1000
        self.start_when_idle = start_when_idle
        self.target_s = None if target_latency_ms is None else target_latency_ms / 1000
        # weighted sums of 1, n, n^2, t and n*t over the observed batches
        self.sums = [0.0] * 5
        self.n_observed = 0
        self.full_streak = 0
        self.cap = self.max_events

    @property
    def lifted(self) -> bool:
        """The consumer is behind: batches may grow to ``max_events``."""
        return self.full_streak >= FULL_STREAK

    def estimate(self) -> tuple[float, float] | None:
        """``(a, b)``: a batch of n events takes ``a + b * n`` seconds (None: too few batches)."""
        if self.n_observed < MIN_BATCHES:
            return None
        w, wn, wnn, wt, wnt = self.sums
        spread = w * wnn - wn * wn
        if spread <= 1e-9 * w * wnn:  # every batch the same size: all of it per event
            return 0.0, wt / wn
        b = max(0.0, (w * wnt - wn * wt) / spread)
        a = max(0.0, (wt - b * wn) / w)
        return a, b

    def observe(self, n_events: int, seconds: float) -> None:
        """A batch of ``n_events`` took ``seconds`` from its start to its last prediction."""
        if self.target_s is None or n_events < 1:
            return
        self.full_streak = self.full_streak + 1 if n_events >= self.cap else 0
        n = float(n_events)
        for i, value in enumerate((1.0, n, n * n, seconds, n * seconds)):
            self.sums[i] = self.sums[i] * DECAY + value
        self.n_observed += 1
        fit = self.estimate()
        if fit is not None:
            a, b = fit
            room = self.target_s - a
            fitting = self.max_events if b == 0 else int(room / b)
            self.cap = min(self.max_events, max(1, fitting))

    def limit(self) -> int:
        """The most events the next batch takes."""
        return self.max_events if self.lifted else self.cap

    def wait_s(self) -> float:
        """How long after its first event the next batch waits for more."""
        fit = self.estimate() if self.target_s is not None else None
        if fit is None or self.target_s is None or self.start_when_idle:
            return self.max_wait_s
        a, b = fit
        return min(self.max_wait_s, max(0.0, self.target_s - (a + b * self.limit())))
