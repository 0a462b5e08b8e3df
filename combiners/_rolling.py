"""Rolling per-model means over the last ``window`` events, in numpy ring buffers.

River's rolling metrics keep a window and ``update`` with new values while ``revert``-ing the
ones that fall out; this does the same for a whole batch at once (no per-event loop).
"""

from __future__ import annotations

import numpy as np

from combiners._validation import BoolArray, FloatArray

__all__ = ["RollingMean"]


class RollingMean:
    """Means of the last ``window`` values per column, with a per-value validity mask.

    Parameters
    ----------
    window : int
        Ring buffer length (events).
    n_columns : int
        Independent series (one per model).
    """

    def __init__(self, window: int, n_columns: int) -> None:
        self.window = window
        self.values: FloatArray = np.zeros((window, n_columns))
        self.valid: BoolArray = np.zeros((window, n_columns), dtype=bool)
        self.sums: FloatArray = np.zeros(n_columns)
        self.counts = np.zeros(n_columns, dtype=np.int64)
        self.pos = 0
        self.n_seen = 0

    def push(self, values: FloatArray, columns_valid: BoolArray | None) -> None:
        """Add ``values`` of shape ``(n_columns, n_events)``; ``columns_valid`` masks columns."""
        batch = values.T[-self.window :]
        n = batch.shape[0]
        if n == 0:
            return
        valid = np.ones(batch.shape, dtype=bool)
        if columns_valid is not None:
            valid &= columns_valid[None, :]
        idx = (self.pos + np.arange(n)) % self.window
        # revert what falls out of the window (never-written slots are zero and invalid) ...
        self.sums -= self.values[idx].sum(axis=0)
        self.counts -= self.valid[idx].sum(axis=0)
        # ... and update with the new values
        self.values[idx] = np.where(valid, batch, 0.0)
        self.valid[idx] = valid
        self.sums += self.values[idx].sum(axis=0)
        self.counts += valid.sum(axis=0)
        wrapped = self.pos + n >= self.window
        self.pos = (self.pos + n) % self.window
        self.n_seen += values.shape[1]
        if wrapped:  # resynchronise once per lap so rounding error cannot accumulate
            self.sums = self.values.sum(axis=0)

    def means(self) -> FloatArray:
        """Mean per column over its valid values in the window; NaN where there are none."""
        out = np.full(self.sums.shape, np.nan)
        np.divide(self.sums, self.counts, out=out, where=self.counts > 0)
        return out
