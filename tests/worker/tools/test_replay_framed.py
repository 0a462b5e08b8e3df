"""``streamfuse replay`` of a topic's records (``kcat -f '%R%s'``): Confluent-framed Avro,
Protobuf and JSON Schema, as ``streamfuse produce --format`` writes them, mixed with plain
JSON, backtested as the same rows as JSON lines (confluent-kafka's in-memory registry client)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from model_store import ModelStore
from worker.config import settings_from_dict
from worker.errors import RegistryUnavailableError
from worker.tools.produce_framed import event_serializer
from worker.tools.replay import read_values, replay

NAMES = ["f0", "f1", "f2"]


def _kcat(values: list[bytes | None]) -> bytes:
    """What ``kcat -C -e -f '%R%s'`` writes: each value behind its length, -1 for null."""
    return b"".join(
        (-1).to_bytes(4, "big", signed=True) if v is None else len(v).to_bytes(4, "big") + v
        for v in values
    )


def test_read_values_tells_size_prefixed_records_from_json_lines() -> None:
    framed = b"\x00\x00\x00\x00\x07body"
    assert read_values(_kcat([b'{"id": 1}', framed, None])) == [b'{"id": 1}', framed, None]
    assert read_values(b'{"id": 1}\n\n{"id": 2}\n') == [b'{"id": 1}', b'{"id": 2}']
    with pytest.raises(ValueError, match="truncated value"):
        read_values(_kcat([framed])[:-1])


@pytest.fixture
def setup(tmp_path: Path, publish_tiny: Callable[..., int]) -> dict[str, Any]:
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )

    store = ModelStore(tmp_path / "store")
    publish_tiny(store, "alpha")
    publish_tiny(store, "beta", seed=3)
    held = np.random.default_rng(2).normal(size=(30, 3))
    store.publish_dataset("heldout", {"X": held, "y": (held[:, 0] > 0).astype(int)})
    settings = settings_from_dict(
        {
            "store": str(tmp_path / "store"),
            "models": [{"name": "alpha"}, {"name": "beta"}],
            "strategy": {"name": "soft_vote"},
            "input": {"fields": {"f0": "features.f0", "f2": "features.deep.f2"}},
            "batch": {"max_events": 16},
        },
        environ={},
    )
    X = np.random.default_rng(1).normal(size=(60, 3))
    ids = [f"e{i}" for i in range(len(X))]
    labels = [orjson.dumps({"id": i, "label": int(x[0] > 0)}) for i, x in zip(ids, X, strict=True)]
    (tmp_path / "labels.jsonl").write_bytes(b"\n".join(labels))
    lines = [orjson.dumps({"id": i, "features": x}) for i, x in zip(ids, X.tolist(), strict=True)]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines))
    return {
        "settings": settings,
        "X": X,
        "ids": ids,
        "lines": lines,
        "tmp": tmp_path,
        "client": MockSchemaRegistryClient({"url": "mock://"}),
    }


@pytest.mark.slow  # replay loads the trained store's models through a trial child
def test_framed_records_replay_as_the_same_rows_in_json(setup: dict[str, Any]) -> None:
    settings, client, tmp = setup["settings"], setup["client"], setup["tmp"]
    encoders = [
        event_serializer(f, settings, NAMES, client) for f in ("avro", "protobuf", "json_schema")
    ]
    values: list[bytes | None] = []
    for k, (event_id, row) in enumerate(zip(setup["ids"], setup["X"].tolist(), strict=True)):
        event = {"id": event_id, "features": row, "ts": 0.0}
        values.append(setup["lines"][k] if k % 4 == 3 else encoders[k % 4](event))
    unknown = b"\x00" + (987654).to_bytes(4, "big") + b"payload"
    (tmp / "topic.bin").write_bytes(_kcat([*values, unknown, None]))
    framed = replay(settings, tmp / "topic.bin", tmp / "labels.jsonl", registry_client=client)
    plain = replay(settings, tmp / "events.jsonl", tmp / "labels.jsonl")
    assert (framed.n_events, framed.n_predicted, framed.n_dead_lettered) == (62, 60, 2)
    assert (
        (plain.n_predicted, plain.n_labelled) == (framed.n_predicted, framed.n_labelled) == (60, 60)
    )
    assert framed.rows == plain.rows and len(plain.rows) == 3


@pytest.mark.slow  # replay loads the trained store's models through a trial child
def test_without_a_registry_framed_records_are_dead_lettered_and_a_silent_one_stops_it(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, client, tmp = setup["settings"], setup["client"], setup["tmp"]
    encode = event_serializer("protobuf", settings, NAMES, client)
    events = [
        encode({"id": i, "features": x, "ts": 0.0})
        for i, x in zip(setup["ids"], setup["X"].tolist(), strict=True)
    ]
    (tmp / "topic.bin").write_bytes(_kcat([*events, setup["lines"][0]]))
    report = replay(settings, tmp / "topic.bin")
    assert (report.n_predicted, report.n_dead_lettered) == (1, 60)
    down = settings.model_copy(
        update={
            "schema_registry": settings.schema_registry.model_copy(
                update={"url": "http://127.0.0.1:9"}
            )
        }
    )
    with pytest.raises(RegistryUnavailableError, match="does not answer"):
        replay(down, tmp / "topic.bin")
