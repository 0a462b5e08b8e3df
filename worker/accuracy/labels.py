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

Label events (docs/events.md): ``{"id": ..., "label": ...}``, multi-task
``{"id": ..., "labels": {"<task>": ...}}``; a multi-task label counts only when every task has a
valid value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any

import numpy as np
import orjson

from worker.accuracy.scoring import EPS
from worker.accuracy.store import RowStore
from worker.accuracy.window import RollingWindow, WindowContents
from worker.batch.layout import Block, OutputLayout
from worker.config import LabelsSettings
from worker.metrics import Metrics

__all__ = ["Joined", "LabelJoiner", "WindowContents"]

_ID_TYPES = frozenset({str, int})


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
        self._predictions = RowStore()
        self._pending = RowStore()
        n_series = len(self.model_names) + len(self.strategy_names)
        self._windows = [
            RollingWindow(
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

    def series(self) -> list[tuple[str, str, str]]:
        """Every ``(scope, name, metric)`` of ``streamfuse_rolling_metric`` this join can set."""
        return [
            (scope, _series_name(name, block, self.layout), metric)
            for block in self.layout.blocks
            for scope, name in self._series
            for metric in _metric_names(block)
        ]

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
        self, block: Block, window: RollingWindow
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
