"""``streamfuse replay``: the batch pipeline offline, no broker, to backtest strategies.

Reads feature events (JSON lines, CSV or Parquet, or a topic's records as ``kcat -f '%R%s'``
writes them: each value behind its length, 4 bytes big-endian), runs them through the
configured models and every configured strategy in micro-batches exactly as the worker would,
joins the labels file by id and scores every model and strategy on the labelled events. With
``schema_registry.url`` a Confluent-framed record (Avro, Protobuf or JSON Schema, as
``streamfuse produce --format`` writes them) is decoded as the worker decodes it; a registry
that does not answer stops the replay (it is not waited for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from worker.accuracy.scoring import score, score_table
from worker.config import Settings
from worker.errors import ConfigError
from worker.inference.pipeline import Pipeline
from worker.inference.serving import Serving, build_serving, open_store

__all__ = ["ReplayReport", "event_records", "label_of", "read_labels", "replay", "replay_pipeline"]


@dataclass
class _Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None = None


@dataclass
class ReplayReport:
    n_events: int
    n_predicted: int
    n_dead_lettered: int
    n_labelled: int
    rows: list[tuple[str, str, dict[str, float]]]

    def table(self) -> str:
        return score_table(self.rows)


def read_labels(path: Path) -> dict[Any, Any]:
    """Label documents by id; lines that are not JSON objects with an id are skipped."""
    truth: dict[Any, Any] = {}
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("id"), str | int):
            truth[doc["id"]] = doc
    return truth


def label_of(doc: dict[str, Any] | None, task: str) -> Any:
    if doc is None:
        return None
    if "labels" in doc and isinstance(doc["labels"], dict):
        return doc["labels"].get(task)
    return doc.get("label")


TABULAR = (".csv", ".parquet", ".pq")


def read_values(data: bytes) -> list[bytes | None]:
    """The record values of an events file: JSON lines, or (when its first byte is 0, as a
    length's under 16 MiB is and a JSON line's never is) values each behind its length, 4
    bytes big-endian, -1 for a null value (``kcat -C -t TOPIC -e -f '%R%s'``)."""
    if not data.startswith(b"\0"):
        return [line for line in data.splitlines() if line.strip()]
    values: list[bytes | None] = []
    at = 0
    while at < len(data):
        if at + 4 > len(data):
            raise ValueError(f"a truncated length at byte {at} of the events file")
        n = int.from_bytes(data[at : at + 4], "big", signed=True)
        at += 4
        if n < 0:
            values.append(None)
            continue
        if at + n > len(data):
            raise ValueError(f"a truncated value at byte {at} of the events file")
        values.append(data[at : at + n])
        at += n
    return values


def event_records(
    store: Any, model: str, events: Path, labels: Path | None, target: str | None
) -> tuple[list[_Record], dict[Any, Any]]:
    """The records of ``events`` (their values as the topic held them) and the label documents
    by id: from ``labels``, and from the ``target`` column of a CSV or Parquet file."""
    truth: dict[Any, Any] = read_labels(labels) if labels is not None else {}
    if events.suffix.lower() in TABULAR:
        from worker.tools.produce import file_events

        docs, label_docs = file_events(store, model, events, target, "row")
        lines: list[bytes | None] = [orjson.dumps(doc) for doc in docs]
        truth.update({doc["id"]: doc for doc in label_docs or []})
    else:
        try:
            lines = read_values(events.read_bytes())
        except ValueError as exc:
            raise ConfigError("--events", f"{events}: {exc}") from exc
    return [_Record("replay", 0, i, None, v) for i, v in enumerate(lines)], truth


def _stop_waiting() -> bool:
    return False  # replay does not wait for a registry that does not answer: it stops


def replay_pipeline(settings: Settings, serving: Serving, client: Any = None) -> Pipeline:
    """The worker's pipeline for ``serving``, no metrics; Confluent-framed records decoded
    through ``client`` (a confluent-kafka registry client) or ``schema_registry.url``."""
    readers = None
    if client is not None or settings.schema_registry.url is not None:
        from worker.schemas import RegistryReaders

        if client is not None:
            readers = RegistryReaders(client, _stop_waiting)
        else:
            config = settings.schema_registry.client_config()
            readers = RegistryReaders.from_config(config, _stop_waiting)
    return Pipeline(
        serving,
        settings.on_model_error,
        settings.validation.max_event_bytes,
        readers=readers,
        input_fields=settings.input,
    )


def replay(
    settings: Settings,
    events: Path,
    labels: Path | None = None,
    target: str | None = None,
    registry_client: Any = None,
) -> ReplayReport:
    """Backtest on feature events (JSON lines, a topic's records (:func:`read_values`), or a
    CSV/Parquet file whose ``target`` column, when named, gives the labels) and a labels file
    (JSON lines). Framed records are decoded through ``schema_registry.url`` (or
    ``registry_client``, a confluent-kafka registry client)."""
    store = open_store(settings.store)
    serving = build_serving(store, settings)
    model_set = serving.model_set
    pipeline = replay_pipeline(settings, serving, registry_client)
    records, truth = event_records(store, model_set.names[0], events, labels, target)
    ids: list[Any] = []
    outs: dict[str, list[np.ndarray]] = {s.name: [] for s in serving.strategies}
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
    if (labels is not None or truth) and ids:
        P = np.concatenate(model_outs, axis=1)
        combined = {name: np.concatenate(parts) for name, parts in outs.items()}
        multitask = model_set.layout.is_multitask
        for block in model_set.layout.blocks:
            suffix = f"[{block.name}]" if multitask else ""
            have = [i for i, d in enumerate(ids) if label_of(truth.get(d), block.name) is not None]
            y, ok = block.label_index([label_of(truth[ids[i]], block.name) for i in have])
            sel = np.asarray(have, dtype=np.int64)[ok]
            y = y[ok]
            n_labelled = max(n_labelled, len(sel))
            cols = slice(block.start, block.stop)
            for m, name in enumerate(model_set.names):
                rows.append(("model", name + suffix, score(block.kind, P[m][sel, cols], y)))
            for name, out in combined.items():
                rows.append(("strategy", name + suffix, score(block.kind, out[sel, cols], y)))
    return ReplayReport(len(records), len(ids), n_dead, n_labelled, rows)
