"""Encode a batch of predictions into output records (one JSON document per event).

The numbers are converted to Python lists once per batch (``ndarray.tolist``); the loop that is
left builds one small dict per event and hands it to orjson.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from worker.batch.layout import OutputLayout

__all__ = ["encode_predictions", "render"]


def render(layout: OutputLayout, outputs: np.ndarray) -> tuple[list[Any], list[Any] | None]:
    """Per-event ``(prediction, scores)`` columns of a single-task or first-task output."""
    block = layout.blocks[0]
    return block.predictions(outputs), block.scores(outputs)


def _task_columns(layout: OutputLayout, outputs: np.ndarray) -> list[dict[str, Any]]:
    n = outputs.shape[0]
    per_task = [(b.name, b.predictions(outputs), b.scores(outputs)) for b in layout.blocks]
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, preds, scores in per_task:
        for i in range(n):
            entry: dict[str, Any] = {"prediction": preds[i]}
            if scores is not None:
                entry["scores"] = scores[i]
            rows[i][name] = entry
    return rows


def encode_predictions(
    *,
    ids: Sequence[Any],
    layout: OutputLayout,
    strategy: str,
    combined: np.ndarray,
    model_names: Sequence[str],
    model_versions: Sequence[int],
    P: np.ndarray,
    available: np.ndarray,
    failure_kinds: dict[str, str],
    shadows: dict[str, np.ndarray],
    latency_ms: float,
    explanation: Any = None,
) -> list[bytes]:
    """JSON values for the output topic, one per event, in ``ids`` order.

    Parameters
    ----------
    combined : ndarray of shape (n_events, n_outputs)
    P : ndarray of shape (n_models, n_events, n_outputs)
    available : ndarray of shape (n_models,), bool
    shadows : dict of name to ndarray of shape (n_events, n_outputs)
    explanation : combiners.Explanation, optional
        The active strategy's per-model contributions: each document gets ``"explain":
        {"link", "base", "models": {name: [...]}}`` (lists of ``n_outputs``, the answering
        models only; a failed model's contribution is 0).
    """
    n = len(ids)
    degraded = not bool(available.all())
    pred, scores = render(layout, combined)
    per_model: list[tuple[str, int, Any, Any, str | None]] = []
    for m, name in enumerate(model_names):
        if available[m]:
            mp, ms = render(layout, P[m])
            per_model.append((name, model_versions[m], mp, ms, None))
        else:
            per_model.append(
                (name, model_versions[m], None, None, failure_kinds.get(name, "error"))
            )
    shadow_preds = [(name, render(layout, out)[0]) for name, out in shadows.items()]
    tasks = _task_columns(layout, combined) if layout.is_multitask else None
    explain = _explain_columns(explanation, model_names, available)
    latency = round(latency_ms, 3)
    dumps = orjson.dumps
    values = []
    for i in range(n):
        models: dict[str, Any] = {}
        for name, version, mp, ms, error in per_model:
            if error is not None:
                models[name] = {"error": error, "version": version}
            elif ms is None:
                models[name] = {"prediction": mp[i], "version": version}
            else:
                models[name] = {"prediction": mp[i], "scores": ms[i], "version": version}
        doc: dict[str, Any] = {"id": ids[i], "prediction": pred[i]}
        if scores is not None:
            doc["scores"] = scores[i]
        doc["strategy"] = strategy
        doc["models"] = models
        if shadow_preds:
            doc["shadow"] = {name: p[i] for name, p in shadow_preds}
        if tasks is not None:
            doc["tasks"] = tasks[i]
        if explain is not None:
            link, base, contributions = explain
            doc["explain"] = {
                "link": link,
                "base": base[i],
                "models": {name: c[i] for name, c in contributions},
            }
        doc["degraded"] = degraded
        doc["latency_ms"] = latency
        values.append(dumps(doc))
    return values


def _explain_columns(
    explanation: Any, model_names: Sequence[str], available: np.ndarray
) -> tuple[str, list[Any], list[tuple[str, list[Any]]]] | None:
    """``(link, base rows, [(model, rows)])`` as lists, converted once per batch."""
    if explanation is None:
        return None
    contributions = [
        (name, explanation.contributions[m].tolist())
        for m, name in enumerate(model_names)
        if available[m]
    ]
    return explanation.link, explanation.base.tolist(), contributions
