"""``streamfuse produce``: replay a data set's test split as feature events, and its ground
truth as label events after a delay, keyed by id so labels land on the events' partitions."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaProducer
from tqdm import tqdm

from model_store import ModelNotFoundError, ModelStore
from worker.config import Settings
from worker.errors import ConfigError
from worker.inference.serving import open_store
from worker.tools.tabular import DataFileError, class_index, feature_columns, read_table
from worker.transport.kafka_python.clients import admin_client, common_config

__all__ = [
    "check_dataset",
    "check_topics",
    "dataset_events",
    "file_events",
    "label_docs",
    "produce",
]


#: The ``test`` data set's array naming the data set it is a split of (``streamfuse train``).
DATASET_NAME_KEY = "dataset"


def check_dataset(store: ModelStore, name: str | None) -> None:
    """The store keeps a test split, of ``name`` when given (stores trained before the split
    named its data set take any name)."""
    try:
        stored = store.load_dataset("test").arrays
    except ModelNotFoundError:
        raise ConfigError(
            "--dataset",
            f"the store {store.root} has no test split (streamfuse train keeps one); send "
            "your own rows with --data FILE",
        ) from None
    if name is None or DATASET_NAME_KEY not in stored:
        return
    have = str(np.asarray(stored[DATASET_NAME_KEY]).reshape(-1)[0])
    if name != have:
        raise ConfigError(
            "--dataset",
            f"the store {store.root} holds the test split of {have!r}, not {name!r}; give "
            f"--dataset {have}, or send your own rows with --data FILE",
        )


def check_topics(settings: Settings, topics: dict[str, str]) -> None:
    """Each of ``topics`` (config key -> topic) exists (the worker creates its topics at
    start-up with ``topics.create``); a broker that does not answer is a
    :class:`BrokerUnavailableError` within ``kafka.connect_timeout_s``."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    for key, topic in topics.items():
        if topic not in existing:
            raise ConfigError(
                key, f"topic {topic!r} does not exist; start the worker, or create it"
            )


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


def file_events(
    store: ModelStore,
    model: str,
    path: Path,
    target: str | None,
    prefix: str,
    count: int | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Feature events (and label events, with a ``target`` column) for a CSV/Parquet file's
    rows. ``features`` is a ``{name: value}`` object when the models were trained with
    feature names (the file's columns are then found by name), else a list in file order."""
    manifest = store.manifest(model)
    schema = manifest["input_schema"]
    names = schema.get("feature_names")
    table = read_table(path)
    if target is not None and target not in table.values:
        raise DataFileError(path, f"no target column {target!r}")
    cols = feature_columns(table, [target] if target else [], names, schema["n_features"])
    X = np.column_stack([table.numeric(c) for c in cols])
    n = len(X) if count is None else min(count, len(X))
    ids = [f"{prefix}-{i}" for i in range(n)]
    now = time.time()
    keys = names if names else None
    events = [
        {"id": i, "features": dict(zip(keys, row, strict=True)) if keys else row, "ts": now}
        for i, row in zip(ids, X[:n].tolist(), strict=True)
    ]
    if target is None:
        return events, None
    raw = np.asarray(table.values[target][:n], dtype=object)
    if manifest["task"] == "classification":
        classes = manifest["classes"]
        index = class_index(path, classes, raw)
        labels = [{"id": d, "label": classes[k]} for d, k in zip(ids, index.tolist(), strict=True)]
    else:
        values = [float(v) for v in raw.tolist()]
        labels = [{"id": d, "label": v} for d, v in zip(ids, values, strict=True)]
    return events, labels


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
    data: Path | None = None,
    target: str | None = None,
    dataset: str | None = None,
    format: str = "json",
) -> int:
    """Send the store's test split (or the rows of ``data``) as events, and their labels
    ``labels_delay`` seconds later (for ``data``, only with a ``target`` column).

    ``format``: ``json`` (the documented events), or ``avro``, ``protobuf`` or
    ``json_schema`` (Confluent-framed, the schema registered in ``schema_registry.url``:
    :mod:`worker.tools.produce_framed`).

    ``dataset``, when given, must be the data set the store's test split came from. The
    topics sent to must exist: checked first, so a missing one stops at once
    (:class:`ConfigError`) instead of after the producer's 60 s metadata wait.
    """
    store = open_store(settings.store)
    model = settings.models[0].name
    if data is not None:
        events, found = file_events(store, model, data, target, prefix, count)
        labels: list[dict[str, Any] | None] = list(found) if found else [None] * len(events)
    else:
        check_dataset(store, dataset)
        events, docs = dataset_events(store, model, prefix, count)
        labels = list(docs)
    encode: Callable[[dict[str, Any]], bytes] = orjson.dumps
    if format != "json":
        from worker.tools.produce_framed import event_serializer

        schema = store.manifest(model)["input_schema"]
        names = schema.get("feature_names") or [f"f{j}" for j in range(schema["n_features"])]
        encode = event_serializer(format, settings, names)
    t = settings.topics
    sends_labels = bool(t.labels) and any(label is not None for label in labels)
    wanted = {"topics.input": t.input}
    if sends_labels and t.labels:
        wanted["topics.labels"] = t.labels
    check_topics(settings, wanted)
    producer = KafkaProducer(**common_config(settings, "-produce", linger_ms=5))
    pending: deque[tuple[float, dict[str, Any]]] = deque()
    start = time.monotonic()
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
        producer.send(t.input, key=key, value=encode(event))
        if label is not None:
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
