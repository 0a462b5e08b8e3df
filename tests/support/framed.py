"""Confluent-framed events for the tests, written by confluent-kafka's own serializers: Avro,
Protobuf and JSON Schema, each with the features in a nested record ``features`` whose field
names are the feature names with spaces as underscores (``input.fields`` maps them)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

Serialize = Callable[[str | int, Sequence[float]], bytes]


def field_name(feature: str) -> str:
    return feature.replace(" ", "_")


def input_fields(features: Sequence[str]) -> dict[str, str]:
    """``input.fields`` for these events: each feature from ``features.<its field name>``."""
    return {f: f"features.{field_name(f)}" for f in features}


def _subject(name: str | None) -> Callable[..., str]:
    return lambda ctx, record_name: name or f"{ctx.topic}-value"


def avro_schema(features: Sequence[str], id_type: str = "string", drop: str = "") -> str:
    fields = [{"name": field_name(f), "type": "double"} for f in features if f != drop]
    inner = {"type": "record", "name": "Features", "fields": fields}
    return json.dumps(
        {
            "type": "record",
            "name": "Event",
            "namespace": "streamfuse.test",
            "fields": [{"name": "id", "type": id_type}, {"name": "features", "type": inner}],
        }
    )


def avro(
    client: Any, topic: str, features: Sequence[str], subject: str | None = None, **schema: Any
) -> Serialize:
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    schema_str = avro_schema(features, **schema)
    names = [f for f in features if f != schema.get("drop")]
    serializer = AvroSerializer(
        client, schema_str, conf={"subject.name.strategy": _subject(subject)}
    )
    ctx = SerializationContext(topic, MessageField.VALUE)

    def serialize(event_id: str | int, row: Sequence[float]) -> bytes:
        values = dict(zip([field_name(f) for f in features], row, strict=True))
        inner = {field_name(n): values[field_name(n)] for n in names}
        return serializer({"id": event_id, "features": inner}, ctx)  # type: ignore[no-any-return]

    return serialize


def json_schema(
    client: Any, topic: str, features: Sequence[str], subject: str | None = None, **types: str
) -> Serialize:
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    props = {field_name(f): {"type": types.get(field_name(f), "number")} for f in features}
    schema_str = json.dumps(
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "Event",
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "features": {"type": "object", "properties": props},
            },
            "required": ["id", "features"],
        }
    )
    serializer = JSONSerializer(
        schema_str, client, conf={"subject.name.strategy": _subject(subject)}
    )
    ctx = SerializationContext(topic, MessageField.VALUE)

    def serialize(event_id: str | int, row: Sequence[float]) -> bytes:
        inner = {field_name(f): v for f, v in zip(features, row, strict=True)}
        return serializer({"id": event_id, "features": inner}, ctx)  # type: ignore[no-any-return]

    return serialize


def protobuf_class(features: Sequence[str]) -> Any:
    """A generated-like message class ``Event {string id; Features features}``, built from a
    descriptor (no protoc needed)."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    T = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="event.proto", package="streamfuse.test")
    file.syntax = "proto3"
    event = file.message_type.add(name="Event")
    event.field.add(name="id", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    event.field.add(
        name="features",
        number=2,
        type=T.TYPE_MESSAGE,
        label=T.LABEL_OPTIONAL,
        type_name=".streamfuse.test.Event.Features",
    )
    inner = event.nested_type.add(name="Features")
    for k, f in enumerate(features, start=1):
        inner.field.add(name=field_name(f), number=k, type=T.TYPE_DOUBLE, label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return GetMessageClass(pool.FindMessageTypeByName("streamfuse.test.Event"))


def protobuf(
    client: Any, topic: str, features: Sequence[str], subject: str | None = None
) -> Serialize:
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    message_class = protobuf_class(features)
    serializer = ProtobufSerializer(
        message_class,
        client,
        conf={"use.deprecated.format": False, "subject.name.strategy": _subject(subject)},
    )
    ctx = SerializationContext(topic, MessageField.VALUE)

    def serialize(event_id: str | int, row: Sequence[float]) -> bytes:
        message = message_class(id=str(event_id))
        for f, v in zip(features, row, strict=True):
            setattr(message.features, field_name(f), v)
        return serializer(message, ctx)  # type: ignore[no-any-return]

    return serialize
