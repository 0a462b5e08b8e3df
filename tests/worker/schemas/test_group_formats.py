"""Protobuf and JSON Schema groups decoded in one call give what the deserializer gives record
by record, and any record it would refuse sends the group back to it (so the reason is its
own). The registry is faked: one registered schema."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import Schema
from google.protobuf import descriptor_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.batch.decode import Schema as DecoderSchema
from worker.batch.framed import FieldMap, decode_mixed
from worker.schemas import RegistryReaders
from worker.schemas.json_group import compiled_validator
from worker.schemas.readers import SchemaReader

JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "x": {"type": "number", "minimum": -100},
        "n": {"type": "integer"},
        "tag": {"enum": ["a", "b"]},
        "nested": {"type": "object", "properties": {"y": {"type": ["number", "null"]}}},
    },
    "required": ["id", "x"],
    "additionalProperties": False,
}


class OneSchema:
    def __init__(self, schema_str: str, kind: str) -> None:
        self.registered = Schema(schema_str, kind)

    def get_schema(self, schema_id: int, subject_name: str | None = None, fmt: Any = None) -> Any:
        return self.registered


def json_reader(schema: dict[str, Any] = JSON_SCHEMA) -> tuple[SchemaReader, RegistryReaders]:
    client = OneSchema(json.dumps(schema), "JSON")
    readers = RegistryReaders(client, lambda: pytest.fail("must not wait"))
    reader = readers.readers({1})[1]
    assert isinstance(reader, SchemaReader)
    return reader, readers


def framed(body: bytes) -> bytes:
    return b"\x00" + (1).to_bytes(4, "big") + body


def test_a_json_schema_group_is_what_the_deserializer_reads() -> None:
    reader, _ = json_reader()
    assert reader._validate is not None
    docs = [
        {"id": f"e{i}", "x": i / 3, "n": i, "nested": {"y": None if i % 2 else 1.5}}
        for i in range(9)
    ]
    values = [framed(orjson.dumps(d)) for d in docs]
    assert reader.decode_all(values) == [reader.decode(v) for v in values] == docs


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(-1000, 1000), st.text(max_size=3)
)
DOCS = st.dictionaries(st.sampled_from(["id", "x", "n", "tag", "nested", "other"]), VALUES)


@settings(max_examples=300, deadline=None)
@given(doc=DOCS)
def test_the_compiled_validator_accepts_only_what_the_deserializer_accepts(
    doc: dict[str, Any],
) -> None:
    reader, _ = json_reader()
    value = framed(orjson.dumps(doc))
    fast = reader.decode_all([value])
    try:
        slow = reader.decode(value)
    except Exception:
        assert fast is None  # refused by the deserializer: never let through the group call
        return
    assert fast in (None, [slow])  # accepted: the same object (or left to the deserializer)


def test_a_bad_record_in_a_json_schema_group_gets_the_deserializers_reason() -> None:
    reader, readers = json_reader()
    docs: list[Any] = [{"id": f"e{i}", "x": float(i)} for i in range(5)]
    docs[1] = {"id": "e1", "x": True}  # a boolean is not a number in JSON Schema
    docs[3] = {"id": "e3", "x": 1.0, "extra": 2}
    values = [framed(orjson.dumps(d)) for d in docs]
    assert reader.decode_all(values) is None
    got = decode_mixed(values, DecoderSchema(1), 1 << 20, readers, FieldMap(("x",)))
    assert got.ids == ["e0", "e2", "e4"] and got.X.ravel().tolist() == [0.0, 2.0, 4.0]
    reasons = {r.index: r.reason for r in got.rejections}
    assert set(reasons) == {1, 3}
    for k in (1, 3):
        with pytest.raises(Exception) as caught:
            reader.decode(values[k])
        assert reasons[k] == f"schema id 1 (JSON Schema): cannot decode: {caught.value}"


@pytest.mark.parametrize(
    ("schema", "compiled"),
    [
        (JSON_SCHEMA, True),
        ({k: v for k, v in JSON_SCHEMA.items() if k != "$schema"}, True),  # the latest draft
        ({**JSON_SCHEMA, "$schema": "https://json-schema.org/draft/2020-12/schema"}, True),
        ({**JSON_SCHEMA, "$schema": "http://example.com/my-draft"}, False),
        ({"type": "object", "properties": {"x": {"$ref": "#/definitions/n"}}}, False),
        ({"type": "object", "properties": {"x": {"type": "array", "items": [{}]}}}, False),
        ({"type": "object", "properties": {"x": {"type": "array", "items": {}}}}, True),
        ({"type": "object", "properties": {"x": {"$id": "other", "type": "number"}}}, False),
        ({"type": "object", "unevaluatedProperties": False}, False),
        ({"type": "object", "properties": {"x": {"type": "number", "multipleOf": 0.1}}}, False),
    ],
)
def test_only_schemas_whose_keywords_mean_the_same_in_every_draft_are_compiled(
    schema: dict[str, Any], compiled: bool
) -> None:
    assert (compiled_validator(schema) is not None) is compiled
    reader, _ = json_reader(schema)
    assert (reader._validate is not None) is compiled


def proto_schema() -> str:
    file = descriptor_pb2.FileDescriptorProto(name="e.proto", package="t", syntax="proto3")
    message = file.message_type.add(name="E")
    message.field.add(name="id", number=1, type=9, label=1)
    message.field.add(name="x", number=2, type=1, label=1)
    file.message_type.add(name="Other").field.add(name="z", number=1, type=1, label=1)
    return base64.b64encode(file.SerializeToString()).decode()


def test_a_protobuf_group_is_what_the_deserializer_reads_and_a_bad_record_its_reason() -> None:
    client = OneSchema(proto_schema(), "PROTOBUF")
    readers = RegistryReaders(client, lambda: pytest.fail("must not wait"))
    reader = readers.readers({1})[1]
    assert isinstance(reader, SchemaReader)
    message = reader._message_class
    values = [framed(b"\x00" + message(id=f"e{i}", x=i / 4).SerializeToString()) for i in range(6)]
    decoded = reader.decode_all(values)
    assert decoded is not None and decoded == [reader.decode(v) for v in values]
    assert [(m.id, m.x) for m in decoded] == [(f"e{i}", i / 4) for i in range(6)]
    values[2] = values[2][:-3]  # cut inside the message
    values[4] = framed(b"\x02\x02" + message(id="e4", x=1.0).SerializeToString())  # message [1]
    assert reader.decode_all(values) is None
    got = decode_mixed(values, DecoderSchema(1), 1 << 20, readers, FieldMap(("x",)))
    assert got.ids == ["e0", "e1", "e3", "e5"]
    reasons = {r.index: r.reason for r in got.rejections}
    assert set(reasons) == {2, 4}
    assert "only its first, t.E, is read" in reasons[4]
    assert reasons[2].startswith("schema id 1 (Protobuf): cannot decode: ")
