"""Rolling metric windows: ring buffers updated and reverted a batch at a time (River's rolling
metrics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RollingWindow", "WindowContents"]


@dataclass(frozen=True)
class WindowContents:
    """One series' rows in the rolling window, oldest first (rows it was not scored on left out).

    ``pred``: class index or value, ``truth``: the same, ``scores``: (n, n_classes) or None.
    """

    pred: np.ndarray
    truth: np.ndarray
    scores: np.ndarray | None


class RollingWindow:
    """The last ``size`` labelled rows of ``n_series`` series, in ring buffers.

    ``stats`` holds per-row metric contributions (mean of each over the valid rows is the
    metric); sums and counts are updated with the new rows and reverted for the ones they
    overwrite, a whole batch at a time.
    """

    def __init__(self, size: int, n_series: int, n_stats: int, n_outputs: int | None) -> None:
        self.size = size
        self.truth = np.zeros(size)
        self.pred = np.zeros((size, n_series))
        self.valid = np.zeros((size, n_series), dtype=bool)
        self.stats = np.zeros((size, n_series, n_stats))
        self.scores = None if n_outputs is None else np.zeros((size, n_series, n_outputs))
        self.sums = np.zeros((n_series, n_stats))
        self.counts = np.zeros(n_series, dtype=np.int64)
        self.pos = 0
        self.n_seen = 0

    def push(
        self,
        truth: np.ndarray,
        pred: np.ndarray,
        valid: np.ndarray,
        stats: np.ndarray,
        scores: np.ndarray | None,
    ) -> None:
        """Rows on axis 0: truth (k,), pred and valid (k, S), stats (k, S, n_stats)."""
        k = min(len(truth), self.size)
        if k == 0:
            return
        idx = (self.pos + np.arange(k)) % self.size
        self.sums -= self.stats[idx].sum(axis=0)
        self.counts -= self.valid[idx].sum(axis=0)
        self.truth[idx] = truth[-k:]
        self.pred[idx] = pred[-k:]
        self.valid[idx] = valid[-k:]
        self.stats[idx] = stats[-k:]
        if self.scores is not None and scores is not None:
            self.scores[idx] = scores[-k:]
        self.sums += self.stats[idx].sum(axis=0)
        self.counts += self.valid[idx].sum(axis=0)
        wrapped = self.pos + k >= self.size
        self.pos = (self.pos + k) % self.size
        self.n_seen += len(truth)
        if wrapped:  # resynchronise once per lap so rounding error cannot accumulate
            self.sums = self.stats.sum(axis=0)

    def means(self) -> np.ndarray:
        """(n_series, n_stats); NaN for a series with no valid row."""
        out = np.full(self.sums.shape, np.nan)
        np.divide(self.sums, self.counts[:, None], out=out, where=self.counts[:, None] > 0)
        return out

    def contents(self, series: int) -> WindowContents:
        filled = min(self.n_seen, self.size)
        order = (self.pos - filled + np.arange(filled)) % self.size
        order = order[self.valid[order, series]]
        pred, truth = self.pred[order, series], self.truth[order]
        if self.scores is None:
            return WindowContents(pred, truth, None)
        classes = self.scores[order, series]
        return WindowContents(pred.astype(np.int64), truth.astype(np.int64), classes)
