"""Live accuracy: join label events to the predictions they score, and keep rolling metrics.

Predictions are kept per batch as the pipeline's own arrays (no per-event objects beyond one
``id -> row`` dict), bounded by ``labels.join_max_entries`` rows and ``labels.join_max_age_s``
seconds, whole batches evicted oldest first. A label that arrives before its prediction waits up
to ``labels.early_label_wait_s`` in a buffer of the same shape and bound, and is joined by the
:meth:`LabelJoiner.add_predictions` call that brings its prediction.

Every joined row updates rolling scores over the last ``labels.window`` labelled events per base
model (scope ``model``) and per strategy (scope ``strategy``): accuracy, log_loss and brier
(classification; brier as :func:`sklearn.metrics.brier_score_loss`, halved for two classes) or
mae and rmse (regression); per task for a multi-task model set, named ``"<name>[<task>]"``. The
window is a numpy ring buffer updated and reverted a batch at a time (River's rolling metrics).
A model unavailable for a row (it failed in that batch) is not scored on it.

Label events (``../shared/DESIGN.md``): ``{"id": ..., "label": ...}``, multi-task
``{"id": ..., "labels": {"<task>": ...}}``; a multi-task label counts only when every task has a
valid value.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from typing import Any

import numpy as np
import orjson

from worker.accuracy.scoring import EPS
from worker.batch.layout import Block, OutputLayout
from worker.config import LabelsSettings
from worker.metrics import Metrics

__all__ = ["Joined", "LabelJoiner", "WindowContents"]

_ID_TYPES = frozenset({str, int})
_NO_ROW = -1


@dataclass(frozen=True)
class Joined:
    """Labelled rows, ready for online strategies' ``partial_fit``.

    Attributes
    ----------
    ids : list of str or int, length k
    P : ndarray of shape (n_models, k, n_outputs)
        Base-model outputs (NaN where a model was unavailable).
    available : ndarray of bool, shape (n_models, k)
        Whether each model answered for each row's batch.
    outputs : dict of str to ndarray of shape (k, n_outputs)
        Each strategy's combined output (NaN rows where that strategy failed in the batch).
    y : ndarray of shape (k,) or (k, n_tasks)
        Class index (int64) or value (float64); multi-task: float64, one column per task.
    """

    ids: list[Any]
    P: np.ndarray
    available: np.ndarray
    outputs: dict[str, np.ndarray]
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def groups(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(P, y, available)`` per distinct availability pattern, ``available`` of shape
        ``(n_models,)`` as ``partial_fit(P, y, available=...)`` takes it."""
        patterns, which = np.unique(self.available.T, axis=0, return_inverse=True)
        for g, pattern in enumerate(patterns):
            if not pattern.any():
                continue
            rows = np.flatnonzero(which.ravel() == g)
            yield self.P[:, rows], self.y[rows], pattern


@dataclass(frozen=True)
class WindowContents:
    """One series' rows in the rolling window, oldest first (rows it was not scored on left out).

    ``pred``: class index or value, ``truth``: the same, ``scores``: (n, n_classes) or None.
    """

    pred: np.ndarray
    truth: np.ndarray
    scores: np.ndarray | None


@dataclass
class _Chunk:
    start: int  # global row number of row 0
    added: float
    ids: list[Any]
    arrays: dict[str, np.ndarray]  # each with rows on axis 0
    n_live: int  # rows still reachable through the index


class _Chunks:
    """Rows kept by id as whole arrays per chunk; evicted a whole chunk at a time, oldest first.

    The index maps an id to a global row number; a chunk is found from it by ``searchsorted``
    on the chunks' starts, so joins gather rows with numpy fancy indexing.
    """

    def __init__(self) -> None:
        self._index: dict[Any, int] = {}
        self._chunks: deque[_Chunk] = deque()
        self._starts = np.zeros(0, dtype=np.int64)
        self._next = 0

    def __len__(self) -> int:
        return len(self._index)

    def has_any(self, ids: Sequence[Any]) -> bool:
        return bool(self._index) and not self._index.keys().isdisjoint(ids)

    def add(self, ids: Sequence[Any], arrays: dict[str, np.ndarray], now: float) -> int:
        """Keep ``ids``' rows of ``arrays``; returns how many older rows they replaced."""
        replaced = 0
        if self.has_any(ids):  # re-delivered ids: the newer row wins
            replaced = int(self._pop(ids).size)
        before = len(self._index)
        start = self._next
        self._index.update(zip(ids, range(start, start + len(ids)), strict=True))
        self._next += len(ids)
        self._chunks.append(_Chunk(start, now, list(ids), arrays, len(self._index) - before))
        self._starts = np.append(self._starts, start)
        return replaced

    def take(self, ids: Sequence[Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Remove ``ids`` from the cache: ``(found mask over ids, their rows in order)``."""
        pos = self._positions(ids, pop=True)
        found = pos >= 0
        pos = pos[found]
        rows: dict[str, np.ndarray] = {}
        if not pos.size:
            return found, rows
        chunk_of = np.searchsorted(self._starts, pos, side="right") - 1
        used = np.unique(chunk_of)
        first = self._chunks[int(used[0])]
        for name, arr in first.arrays.items():
            rows[name] = np.empty((pos.size, *arr.shape[1:]), dtype=arr.dtype)
        for c in used.tolist():
            chunk = self._chunks[c]
            sel = chunk_of == c
            for name, out in rows.items():
                out[sel] = chunk.arrays[name][pos[sel] - chunk.start]
        self._release(chunk_of)
        return found, rows

    def expire(self, oldest: float, max_entries: int) -> int:
        """Drop chunks added before ``oldest`` and then while over ``max_entries`` rows;
        returns the live rows dropped."""
        dropped = 0
        while self._chunks and (self._chunks[0].added < oldest or len(self._index) > max_entries):
            chunk = self._chunks.popleft()
            self._starts = self._starts[1:]
            if chunk.n_live:
                dropped += chunk.n_live
                pos = self._positions(chunk.ids, pop=False)
                mine = (pos >= chunk.start) & (pos < chunk.start + len(chunk.ids))
                deque(map(self._index.__delitem__, compress(chunk.ids, mine)), maxlen=0)
        return dropped

    def _positions(self, ids: Sequence[Any], pop: bool) -> np.ndarray:
        lookup = self._index.pop if pop else self._index.get
        return np.fromiter(map(lookup, ids, repeat(_NO_ROW)), dtype=np.int64, count=len(ids))

    def _pop(self, ids: Sequence[Any]) -> np.ndarray:
        pos = self._positions(ids, pop=True)
        pos = pos[pos >= 0]
        if pos.size:
            self._release(np.searchsorted(self._starts, pos, side="right") - 1)
        return pos

    def _release(self, chunk_of: np.ndarray) -> None:
        counts = np.bincount(chunk_of, minlength=len(self._chunks))
        for c in np.flatnonzero(counts).tolist():
            self._chunks[c].n_live -= int(counts[c])
        if any(chunk.n_live == 0 for chunk in self._chunks):
            self._chunks = deque(chunk for chunk in self._chunks if chunk.n_live > 0)
            self._starts = np.array([chunk.start for chunk in self._chunks], dtype=np.int64)


class _Window:
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


class LabelJoiner:
    """Join label events to cached predictions and keep rolling metrics per model and strategy.

    Parameters
    ----------
    layout : OutputLayout
        How the output columns map to tasks and classes.
    model_names, strategy_names : list of str
        In the order of ``P``'s first axis, and the keys of the ``outputs`` dicts.
    settings : LabelsSettings
    metrics : Metrics
    clock : callable returning seconds, default ``time.monotonic``
    """

    def __init__(
        self,
        layout: OutputLayout,
        model_names: list[str],
        strategy_names: list[str],
        settings: LabelsSettings,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.layout = layout
        self.model_names = list(model_names)
        self.strategy_names = list(strategy_names)
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self._predictions = _Chunks()
        self._pending = _Chunks()
        n_series = len(self.model_names) + len(self.strategy_names)
        self._windows = [
            _Window(
                settings.window,
                n_series,
                3 if b.kind == "classification" else 2,
                b.n_outputs if b.kind == "classification" else None,
            )
            for b in layout.blocks
        ]
        self._series = [("model", n) for n in self.model_names] + [
            ("strategy", n) for n in self.strategy_names
        ]

    # -- public ------------------------------------------------------------------------------

    def add_predictions(
        self,
        ids: Sequence[Any],
        P: np.ndarray,
        available: np.ndarray,
        outputs: dict[str, np.ndarray],
    ) -> Joined | None:
        """Cache one published batch: ``P`` (n_models, n, n_outputs), ``available``
        (n_models,), ``outputs`` strategy name to (n, n_outputs).

        Returns the rows joined to labels that had arrived early and waited for this batch.
        """
        now = self.clock()
        joined = None
        n = len(ids)
        if n:
            n_out = self.layout.n_outputs
            missing = np.broadcast_to(np.float64(np.nan), (n, n_out))
            arrays = {
                "P": np.moveaxis(np.asarray(P, dtype=np.float64), 1, 0),
                "available": np.broadcast_to(np.asarray(available, dtype=bool), (n, len(P))),
            }
            for name in self.strategy_names:
                out = outputs.get(name)
                arrays["s:" + name] = missing if out is None else out
            self._predictions.add(ids, arrays, now)
        self._expire(now)
        if n and self._pending.has_any(ids):
            found, waiting = self._pending.take(ids)
            _, joined = self._join(list(compress(ids, found)), waiting["y"])
        return joined

    def add_labels(self, values: Sequence[bytes | None]) -> Joined | None:
        """Decode label events and join them; returns the joined rows, or None when none."""
        now = self.clock()
        self._expire(now)
        ids, y, ok = self._decode(values)
        unmatched = int((~ok).sum())
        ids = list(compress(ids, ok))
        y = y[ok]
        found, joined = self._join(ids, y)
        early = ~found
        if early.any():
            if self.settings.early_label_wait_s > 0:
                unmatched += self._pending.add(list(compress(ids, early)), {"y": y[early]}, now)
                self._expire(now)  # the waiting buffer's own bound
            else:
                unmatched += int(early.sum())
        self.metrics.labels_unmatched.inc(unmatched)
        return joined

    def rolling_snapshot(self) -> dict[tuple[str, str, str], float]:
        """``(scope, name, metric) -> value`` for every series scored on at least one row."""
        return {
            (scope, name, metric): value
            for block, window in zip(self.layout.blocks, self._windows, strict=True)
            for scope, name, metric, value in self._block_metrics(block, window)
        }

    def window_contents(self, scope: str, name: str) -> WindowContents:
        """The rows one series is scored on now; ``name`` as in the metric (``"mlp[task]"``)."""
        for block, window in zip(self.layout.blocks, self._windows, strict=True):
            for s, (sc, base) in enumerate(self._series):
                if sc == scope and _series_name(base, block, self.layout) == name:
                    return window.contents(s)
        raise KeyError((scope, name))

    @property
    def n_cached(self) -> int:
        return len(self._predictions)

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    # -- internals ---------------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        s = self.settings
        evicted = self._predictions.expire(now - s.join_max_age_s, s.join_max_entries)
        if evicted:
            self.metrics.labels_evicted.inc(evicted)
        expired = self._pending.expire(now - s.early_label_wait_s, s.join_max_entries)
        if expired:
            self.metrics.labels_unmatched.inc(expired)

    def _decode(self, values: Sequence[bytes | None]) -> tuple[list[Any], np.ndarray, np.ndarray]:
        docs = list(map(_load, values))
        n = len(docs)
        ids = [d.get("id") for d in docs]
        ok = np.fromiter((type(i) in _ID_TYPES for i in ids), dtype=bool, count=n)
        blocks = self.layout.blocks
        if not self.layout.is_multitask:
            raw = [d.get("label") for d in docs]
            y, good = blocks[0].label_index(raw)
            return ids, y, ok & good
        y = np.zeros((n, len(blocks)))
        for j, block in enumerate(blocks):
            raw = [_task_label(d, block.name) for d in docs]
            y[:, j], good = block.label_index(raw)
            ok &= good
        return ids, y, ok

    def _join(self, ids: list[Any], y: np.ndarray) -> tuple[np.ndarray, Joined | None]:
        """Join ``ids`` (labels ``y``) to cached predictions: ``(found mask, joined rows)``."""
        found, rows = self._predictions.take(ids)
        if not found.any():
            return found, None
        ids = list(compress(ids, found))
        y = y[found]
        joined = Joined(
            ids=ids,
            P=np.moveaxis(rows["P"], 0, 1),
            available=rows["available"].T.copy(),
            outputs={name: rows["s:" + name] for name in self.strategy_names},
            y=y,
        )
        self._score(joined)
        self.metrics.labels_joined.inc(len(ids))
        return found, joined

    def _score(self, joined: Joined) -> None:
        Q = np.concatenate([joined.P, *(o[None] for o in joined.outputs.values())])  # (S, k, n)
        n_strategies = len(self.strategy_names)
        up = np.concatenate([joined.available, np.ones((n_strategies, len(joined)), dtype=bool)])
        valid = up & np.isfinite(Q).all(axis=2)  # (S, k); a failed strategy's rows are NaN
        for j, (block, window) in enumerate(zip(self.layout.blocks, self._windows, strict=True)):
            cols = np.where(valid[..., None], Q[..., block.start : block.stop], 0.0)  # (S, k, nb)
            truth = joined.y[:, j] if joined.y.ndim == 2 else joined.y
            stats, pred, scores = _contributions(block, cols, truth)
            stats = np.where(valid[..., None], stats, 0.0)
            window.push(
                truth.astype(np.float64),
                pred.T,
                valid.T,
                stats.transpose(1, 0, 2),
                None if scores is None else scores.transpose(1, 0, 2),
            )
            for scope, name, metric, value in self._block_metrics(block, window):
                self.metrics.rolling_metric.labels(scope, name, metric).set(value)

    def _block_metrics(
        self, block: Block, window: _Window
    ) -> Iterator[tuple[str, str, str, float]]:
        names = _metric_names(block)
        values = _metric_values(block, window.means())
        for s, (scope, name) in enumerate(self._series):
            if window.counts[s] == 0:
                continue
            label = _series_name(name, block, self.layout)
            for j, metric in enumerate(names):
                yield scope, label, metric, float(values[s, j])


def _load(value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _task_label(doc: dict[str, Any], task: str) -> Any:
    labels = doc.get("labels")
    return labels.get(task) if isinstance(labels, dict) else None


def _series_name(name: str, block: Block, layout: OutputLayout) -> str:
    return f"{name}[{block.name}]" if layout.is_multitask else name


def _metric_names(block: Block) -> tuple[str, ...]:
    if block.kind == "classification":
        return ("accuracy", "log_loss", "brier")
    return ("mae", "rmse")


def _metric_values(block: Block, means: np.ndarray) -> np.ndarray:
    if block.kind == "classification":
        return means
    return np.column_stack([means[:, 0], np.sqrt(means[:, 1])])


def _contributions(
    block: Block, cols: np.ndarray, truth: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-row metric contributions ``(S, k, n_stats)``, predictions ``(S, k)`` and scores.

    Classification: correct, -log p(true), brier (halved for two classes, as scikit-learn).
    Regression (first column of the block): absolute and squared error.
    """
    k = cols.shape[1]
    if block.kind == "classification":
        idx = truth.astype(np.int64)
        pred = cols.argmax(axis=2)
        p_true = cols[:, np.arange(k), idx]
        onehot = np.zeros(cols.shape[1:])
        onehot[np.arange(k), idx] = 1.0
        brier = ((cols - onehot) ** 2).sum(axis=2)
        if block.n_outputs == 2:
            brier = brier / 2
        stats = np.stack(
            [(pred == idx).astype(np.float64), -np.log(np.clip(p_true, EPS, 1.0)), brier], axis=2
        )
        return stats, pred, cols
    pred = cols[:, :, 0]
    err = pred - truth
    return np.stack([np.abs(err), err**2], axis=2), pred, None
