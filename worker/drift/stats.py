"""Drift statistics over binned samples, whole arrays at a time (no per-event Python).

A feature's reference is its quantile bin edges: ``n_bins - 1`` inner edges, bin ``i`` holding
the values in ``(edge[i-1], edge[i]]`` (bin 0 everything up to the first edge, the last bin
everything above the last). Live values are counted into the same bins and compared with the
reference's shares:

- population stability index, ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over the live shares
  ``a`` and reference shares ``e``, both floored at :data:`SHARE_FLOOR` so an empty bin counts
  as a small share rather than an infinity;
- a Kolmogorov-Smirnov-style statistic: the largest gap between the two cumulative shares at
  the bin edges. It is the two-sample KS statistic of the binned samples, a lower bound of the
  exact one, and equal to it (``scipy.stats.ks_2samp``) when the values only take the edges'
  values (or lie within one bin between edges).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SHARE_FLOOR", "bin_counts", "bin_index", "binned_ks", "psi", "quantile_edges", "shares"]

SHARE_FLOOR = 1e-4


def quantile_edges(X: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner bin edges of each column of ``X`` (n_rows, n_columns): its quantiles at
    ``1/n_bins, ..., (n_bins-1)/n_bins``, taken from the sample's own values
    (``inverted_cdf``), shape (n_columns, n_bins - 1). Repeated edges (ties) give empty bins
    in the reference and the live counts alike."""
    q = np.arange(1, n_bins) / n_bins
    return np.ascontiguousarray(np.quantile(X, q, axis=0, method="inverted_cdf").T)


def bin_index(X: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of every value of ``X`` (n_rows, n_columns) among its column's ``edges``
    (n_columns, n_bins - 1): the number of edges below it, (n_rows, n_columns) int64."""
    index = np.zeros(X.shape, dtype=np.int64)
    for k in range(edges.shape[1]):  # one pass per edge, not per row
        index += edges[:, k] < X
    return index


def bin_counts(X: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many rows of ``X`` (n_rows, n_columns) fall in each bin of each column:
    (n_columns, n_bins) int64, for ``edges`` of shape (n_columns, n_bins - 1)."""
    n_columns, n_bins = edges.shape[0], edges.shape[1] + 1
    index = bin_index(X, edges) + np.arange(n_columns) * n_bins
    return np.bincount(index.ravel(), minlength=n_columns * n_bins).reshape(n_columns, n_bins)


def shares(counts: np.ndarray) -> np.ndarray:
    """Counts (..., n_bins) as shares of their row totals (rows with no count: zeros)."""
    totals = counts.sum(axis=-1, keepdims=True)
    out: np.ndarray = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return out


def psi(live: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Population stability index of each row of ``live`` shares against ``reference``
    shares (both (..., n_bins)); shape (...,)."""
    a = np.maximum(live, SHARE_FLOOR)
    e = np.maximum(reference, SHARE_FLOOR)
    index: np.ndarray = ((a - e) * np.log(a / e)).sum(axis=-1)
    return index


def binned_ks(live: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Largest gap between the cumulative ``live`` and ``reference`` shares (..., n_bins);
    shape (...,)."""
    gap = np.abs(np.cumsum(live, axis=-1) - np.cumsum(reference, axis=-1))
    largest: np.ndarray = gap.max(axis=-1)
    return largest
