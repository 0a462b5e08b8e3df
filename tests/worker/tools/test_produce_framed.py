"""``streamfuse produce --format protobuf|json_schema``: each event framed by confluent-kafka's
serializer, its fields where the worker looks, read back by the worker's own readers (against
confluent-kafka's in-memory registry client: pure logic; the broker and registry test is in
tests/integration/test_schema_registry.py)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from worker.batch.framed import FieldMap
from worker.config import settings_from_dict
from worker.errors import ConfigError
from worker.schemas.readers import SchemaReader
from worker.tools.produce_framed import (
    event_serializer,
    json_schema_event_schema,
    protobuf_event_class,
)

MINIMAL: dict[str, Any] = {"models": [{"name": "alpha"}], "strategy": {"name": "soft_vote"}}
RENAMED = {
    **MINIMAL,
    "input": {
        "fields": {"mean radius": "features.mean_radius", "deep": "a.b.deep"},
        "id_field": "event_id",
        "ts_field": "at",
    },
}
NAMES = ["mean radius", "f1", "deep"]


def _client() -> Any:
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )

    return MockSchemaRegistryClient({"url": "mock://"})


@pytest.mark.parametrize(
    ("fmt", "kind"), [("protobuf", "Protobuf"), ("json_schema", "JSON Schema"), ("avro", "Avro")]
)
def test_a_produced_event_is_read_by_the_worker_at_its_fields(fmt: str, kind: str) -> None:
    from confluent_kafka.schema_registry.serde import SchemaId

    settings = settings_from_dict(RENAMED)
    client = _client()
    encode = event_serializer(fmt, settings, NAMES, client)
    value = encode({"id": 42, "features": [1.5, -2.0, 0.0], "ts": 1700000000.25})
    schema_id = SchemaId("AVRO")
    schema_id.from_bytes(io.BytesIO(value))
    latest = client.get_latest_version(f"{settings.topics.input}-value")
    assert latest.schema_id == schema_id.id  # registered under <input topic>-value
    reader = SchemaReader(schema_id.id, latest.schema, client)
    assert reader.format == kind
    i = settings.input
    fields = FieldMap(tuple(i.fields.get(n, n) for n in NAMES), i.id_field, i.ts_field)
    assert reader.problem(fields) is None  # every feature a number, the id and the time there
    decoded = reader.decode(value)
    paths = ["features.mean_radius", "f1", "a.b.deep"]
    assert list(reader.row_getter(paths)(decoded)) == [1.5, -2.0, 0.0]
    assert reader.getter("event_id")(decoded) == "42"
    assert reader.getter("at")(decoded) == 1700000000.25


def test_the_protobuf_event_nests_messages_for_dotted_paths() -> None:
    event = protobuf_event_class(settings_from_dict(RENAMED), NAMES).DESCRIPTOR
    assert [f.name for f in event.fields] == ["event_id", "features", "f1", "a", "at"]
    assert event.fields_by_name["features"].message_type.full_name == (
        "streamfuse.produce.Event.Features"
    )
    deep = event.fields_by_name["a"].message_type.fields_by_name["b"].message_type
    assert [f.name for f in deep.fields] == ["deep"]


def test_the_json_schema_event_requires_every_field() -> None:
    schema = json.loads(json_schema_event_schema(settings_from_dict(RENAMED), NAMES))
    assert schema["required"] == ["event_id", "features", "f1", "a", "at"]
    assert schema["properties"]["features"]["properties"] == {"mean_radius": {"type": "number"}}
    assert schema["properties"]["event_id"] == {"type": "string"}


@pytest.mark.parametrize(("fmt", "kind"), [("protobuf", "Protobuf"), ("json_schema", "JSON")])
def test_a_feature_name_the_format_cannot_take_names_input_fields(fmt: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=rf"{kind}.*input\.fields.*features\.mean_radius"):
        event_serializer(fmt, settings_from_dict(MINIMAL), ["mean radius"], _client())
    with pytest.raises(ConfigError, match=r"needs schema_registry\.url"):
        event_serializer(fmt, settings_from_dict(MINIMAL), ["f0"])
