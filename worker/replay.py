"""``streamfuse replay``: the batch pipeline offline, no broker, to backtest strategies.

Reads feature events (JSON lines), runs them through the configured models and every configured
strategy in micro-batches exactly as the worker would, joins the labels file by id and scores
every model and strategy on the labelled events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from model_store import ModelStore
from worker.config import Settings
from worker.models import ModelSet
from worker.pipeline import Pipeline
from worker.scoring import score
from worker.strategies import build_strategies

__all__ = ["ReplayReport", "replay"]


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class ReplayReport:
    n_events: int
    n_predicted: int
    n_dead_lettered: int
    n_labelled: int
    rows: list[tuple[str, str, dict[str, float]]]

    def table(self) -> str:
        metrics = sorted({k for _, _, s in self.rows for k in s})
        lines = [f"| scope | name | {' | '.join(metrics)} |", "|" + "---|" * (2 + len(metrics))]
        for scope, name, scores in self.rows:
            cells = " | ".join(f"{scores[m]:.4f}" if m in scores else "" for m in metrics)
            lines.append(f"| {scope} | {name} | {cells} |")
        return "\n".join(lines)


def replay(settings: Settings, events: Path, labels: Path | None = None) -> ReplayReport:
    store = ModelStore(settings.store)
    model_set = ModelSet(store, settings.models)
    strategies = build_strategies(store, model_set, settings.strategy, settings.shadow_strategies)
    pipeline = Pipeline(
        model_set, strategies, settings.on_model_error, settings.validation.max_event_bytes
    )
    lines = [line for line in events.read_bytes().splitlines() if line.strip()]
    records = [_Record("replay", 0, i, None, v) for i, v in enumerate(lines)]
    ids: list[Any] = []
    outs: dict[str, list[np.ndarray]] = {s.name: [] for s in strategies}
    model_outs: list[np.ndarray] = []
    n_dead = 0
    size = settings.batch.max_events
    try:
        for start in range(0, len(records), size):
            result = pipeline.process(records[start : start + size])
            n_dead += len(result.dead_letters)
            if not result.ids:
                continue
            ids.extend(result.ids)
            for name in outs:
                outs[name].append(result.outputs[name])
            assert result.P is not None
            model_outs.append(result.P)
    finally:
        pipeline.close()
    rows: list[tuple[str, str, dict[str, float]]] = []
    n_labelled = 0
    if labels is not None and ids:
        truth = {}
        for line in labels.read_bytes().splitlines():
            if line.strip():
                doc = orjson.loads(line)
                truth[doc["id"]] = doc.get("label")
        block = model_set.layout.blocks[0]
        have = [i for i, d in enumerate(ids) if d in truth]
        y, ok = block.label_index([truth[ids[i]] for i in have])
        sel = np.asarray(have, dtype=np.int64)[ok]
        y = y[ok]
        n_labelled = len(sel)
        kind = block.kind
        P = np.concatenate(model_outs, axis=1)
        for m, name in enumerate(model_set.names):
            rows.append(("model", name, score(kind, P[m][sel], y)))
        for name, parts in outs.items():
            rows.append(("strategy", name, score(kind, np.concatenate(parts)[sel], y)))
    return ReplayReport(len(records), len(ids), n_dead, n_labelled, rows)
