"""``streamfuse produce``: replay a data set's test split as feature events, and its ground
truth as label events after a delay, keyed by id so labels land on the events' partitions."""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

import numpy as np
import orjson
from kafka import KafkaProducer
from tqdm import tqdm

from model_store import ModelStore
from worker.config import Settings
from worker.inference.serving import open_store
from worker.transport.kafka_python.clients import common_config

__all__ = ["dataset_events", "label_docs", "produce"]


def dataset_events(
    store: ModelStore, model: str, prefix: str, count: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Feature events and label events for the test split kept in the store by ``train``."""
    data = store.load_dataset("test").arrays
    X = np.asarray(data["X"], dtype=np.float64)
    n = len(X) if count is None else count
    rows = np.resize(np.arange(len(X)), n)  # wraps around when more events are asked for
    ids = [f"{prefix}-{i}" for i in range(n)]
    now = time.time()
    events = [
        {"id": i, "features": x, "ts": now} for i, x in zip(ids, X[rows].tolist(), strict=True)
    ]
    manifest = store.manifest(model)
    return events, label_docs(manifest, data, rows, ids)


def label_docs(
    manifest: dict[str, Any], data: dict[str, np.ndarray], rows: np.ndarray, ids: list[str]
) -> list[dict[str, Any]]:
    if manifest["task"] == "multitask":
        targets = np.asarray(data["targets"])[rows]
        out = []
        for i, doc_id in enumerate(ids):
            labels = {}
            for j, t in enumerate(manifest["tasks"]):
                v = float(targets[i, j])
                labels[t["name"]] = t["classes"][int(v)] if t.get("classes") else v
            out.append({"id": doc_id, "labels": labels})
        return out
    y = np.asarray(data["y"])[rows]
    if manifest["task"] == "classification":
        classes = manifest["classes"]
        return [{"id": d, "label": classes[int(v)]} for d, v in zip(ids, y.tolist(), strict=True)]
    return [{"id": d, "label": float(v)} for d, v in zip(ids, y.tolist(), strict=True)]


def produce(
    settings: Settings,
    count: int | None = None,
    rate: float | None = None,
    labels_delay: float = 2.0,
    prefix: str = "evt",
    progress: bool = True,
) -> int:
    store = open_store(settings.store)
    events, labels = dataset_events(store, settings.models[0].name, prefix, count)
    producer = KafkaProducer(**common_config(settings, "-produce", linger_ms=5))
    pending: deque[tuple[float, dict[str, Any]]] = deque()
    start = time.monotonic()
    t = settings.topics
    for i, (event, label) in enumerate(
        tqdm(
            list(zip(events, labels, strict=True)),
            desc="produce",
            disable=not progress,
            file=sys.stderr,
        )
    ):
        if rate:
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # pacing the producer, not synchronisation
        event["ts"] = time.time()
        key = str(event["id"]).encode()
        producer.send(t.input, key=key, value=orjson.dumps(event))
        pending.append((time.monotonic() + labels_delay, label))
        while pending and pending[0][0] <= time.monotonic():
            _, due = pending.popleft()
            if t.labels:
                producer.send(t.labels, key=str(due["id"]).encode(), value=orjson.dumps(due))
    producer.flush()
    while pending:
        due_at, due = pending.popleft()
        time.sleep(max(0.0, due_at - time.monotonic()))
        if t.labels:
            producer.send(t.labels, key=str(due["id"]).encode(), value=orjson.dumps(due))
    producer.flush()
    producer.close()
    return len(events)
