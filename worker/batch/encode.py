"""Encode a batch of predictions into output records (one JSON document per event).

The numbers are converted to Python lists once per batch (``ndarray.tolist``) and each column to
JSON fragments by orjson (``map``); one byte template per batch puts them together per event
(``bytes.__mod__`` over ``zip``), so no Python code runs per event. The bytes are those of
``orjson.dumps`` of the documented dict, key for key.
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


def _scores_fields(
    layout: OutputLayout, outputs: np.ndarray, keyed: bool
) -> tuple[bytes, list[Any]]:
    """The template part and the columns of the first task's scores (none for regression).

    As a list, ``"classes"`` follows with the class of each column: the same for every event of
    a snapshot, so a constant of the template, not a column. ``keyed``: an object keyed by
    class (``str`` of it: JSON keys are text), one column of numbers per class.
    """
    block = layout.blocks[0]
    if block.kind != "classification":
        return b"", []
    classes = list(block.classes or range(block.n_outputs))
    cols = outputs[:, block.start : block.stop]
    if keyed:
        keys = b",".join(_literal(str(c)) + b":%s" for c in classes)
        return b',"scores":{' + keys + b"}", [map(orjson.dumps, c) for c in cols.T.tolist()]
    return b',"scores":%s,"classes":' + _literal(classes), [map(orjson.dumps, cols.tolist())]


def _task_columns(layout: OutputLayout, outputs: np.ndarray, keyed: bool) -> list[dict[str, Any]]:
    n = outputs.shape[0]
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for b in layout.blocks:
        name, preds, scores = b.name, b.predictions(outputs), b.scores(outputs)
        classes = list(b.classes or range(b.n_outputs))
        keys = [str(c) for c in classes]
        for i in range(n):
            entry: dict[str, Any] = {"prediction": preds[i]}
            if scores is not None and keyed:
                entry["scores"] = dict(zip(keys, scores[i], strict=True))
            elif scores is not None:
                entry["scores"] = scores[i]
                entry["classes"] = classes
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
    scores_by_class: bool = False,
    arms: np.ndarray | None = None,
) -> list[bytes]:
    """JSON values for the output topic, one per event, in ``ids`` order.

    Classification documents carry ``"classes"`` beside every ``"scores"`` (top level, per model
    and per task): the class of each score column, a constant of the batch's template; with
    ``scores_by_class`` (``output.scores_by_class``), each ``"scores"`` is an object keyed by
    class instead.

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
    arms : ndarray of bool, shape (n_events,), optional
        While a rollout runs: the events whose ``combined`` row is the candidate's; each
        document gets ``"arm": "candidate"`` or ``"champion"`` (no ``arm`` without a rollout).
    """
    degraded = not bool(available.all())
    dumps = orjson.dumps
    pred = layout.blocks[0].predictions(combined)
    # One byte template per batch: every field that varies is a column of JSON fragments, made
    # by orjson over the whole column; the template fills them in per event, at C speed.
    template = [b'{"id":%s,"prediction":%s']
    columns: list[Any] = [map(dumps, ids), map(dumps, pred)]
    part, cols = _scores_fields(layout, combined, scores_by_class)
    template.append(part)
    columns.extend(cols)
    template.append(b',"strategy":' + _literal(strategy) + b',"models":{')
    for m, name in enumerate(model_names):
        entry = (b"," if m else b"") + _literal(name) + b":{"
        version = b',"version":%d}' % int(model_versions[m])
        if not available[m]:
            error = _literal(failure_kinds.get(name, "error"))
            template.append(entry + b'"error":' + error + version)
            continue
        template.append(entry + b'"prediction":%s')
        columns.append(map(dumps, layout.blocks[0].predictions(P[m])))
        part, cols = _scores_fields(layout, P[m], scores_by_class)
        template.append(part + version)
        columns.extend(cols)
    template.append(b"}")
    if shadows:
        names = [_literal(name) + b":%s" for name in shadows]
        template.append(b',"shadow":{' + b",".join(names) + b"}")
        columns.extend(map(dumps, render(layout, out)[0]) for out in shadows.values())
    if layout.is_multitask:
        template.append(b',"tasks":%s')
        columns.append(map(dumps, _task_columns(layout, combined, scores_by_class)))
    explain = _explain_columns(explanation, model_names, available)
    if explain is not None:
        link, base, contributions = explain
        parts = [_literal(name) + b":%s" for name, _ in contributions]
        template.append(
            b',"explain":{"link":'
            + _literal(link)
            + b',"base":%s,"models":{'
            + b",".join(parts)
            + b"}}"
        )
        columns.append(map(dumps, base))
        columns.extend(map(dumps, rows) for _, rows in contributions)
    if arms is not None:
        template.append(b',"arm":%s')
        columns.append(map(_ARM_LITERALS.__getitem__, arms.tolist()))
    template.append(b',"degraded":' + (b"true" if degraded else b"false"))
    template.append(b',"latency_ms":' + _literal(round(latency_ms, 3)) + b"}")
    return list(map(b"".join(template).__mod__, zip(*columns, strict=True)))


_ARM_LITERALS = (b'"champion"', b'"candidate"')  # indexed by the canary flag


def _literal(value: Any) -> bytes:
    """``value`` as JSON, fit for a ``%`` template."""
    return orjson.dumps(value).replace(b"%", b"%%")


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
