"""``streamfuse produce --format protobuf|json_schema``: events as Confluent-framed Protobuf or
JSON Schema, through confluent-kafka's ``ProtobufSerializer`` and ``JSONSerializer``, the schema
registered under ``<topic>-value`` as a team's own producer would.

The schema is the one ``--format avro`` generates (:mod:`worker.tools.produce_avro`), where the
worker looks: each feature a double at its ``input.fields`` path (a dotted path is a nested
message or object), the id at ``input.id_field``, the time at ``input.ts_field`` when set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from worker.config import Settings
from worker.errors import ConfigError
from worker.tools.produce_avro import avro_event_serializer, event_builder, event_tree

__all__ = [
    "event_serializer",
    "json_schema_event_schema",
    "protobuf_event_class",
]


def protobuf_event_class(settings: Settings, feature_names: Sequence[str]) -> Any:
    """The message class ``streamfuse.produce.Event`` built from a descriptor made in code:
    nested messages for dotted paths, doubles, the id a string, the time a double."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    T = descriptor_pb2.FieldDescriptorProto
    s = settings.input
    top: dict[str, Any] = {s.id_field: "string", **event_tree(settings, feature_names, "Protobuf")}
    if s.ts_field is not None:
        top[s.ts_field] = "double"
    file = descriptor_pb2.FileDescriptorProto(
        name="streamfuse/produce/event.proto", package="streamfuse.produce", syntax="proto3"
    )
    scalar = {"double": T.TYPE_DOUBLE, "string": T.TYPE_STRING}

    def message(into: Any, name: str, node: dict[str, Any], full: str) -> None:
        out = into.add(name=name)
        for number, (k, v) in enumerate(node.items(), start=1):
            field = out.field.add(name=k, number=number, label=T.LABEL_OPTIONAL)
            if isinstance(v, str):
                field.type = scalar[v]
                continue
            nested = k[:1].upper() + k[1:]
            message(out.nested_type, nested, v, f"{full}.{name}")
            field.type, field.type_name = T.TYPE_MESSAGE, f"{full}.{name}.{nested}"

    message(file.message_type, "Event", top, ".streamfuse.produce")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return GetMessageClass(pool.FindMessageTypeByName("streamfuse.produce.Event"))


def json_schema_event_schema(settings: Settings, feature_names: Sequence[str]) -> str:
    """The JSON Schema (draft 7) of an event: nested objects for dotted paths, numbers."""

    def obj(node: dict[str, Any]) -> dict[str, Any]:
        props = {k: {"type": "number"} if isinstance(v, str) else obj(v) for k, v in node.items()}
        return {"type": "object", "properties": props, "required": list(props)}

    s = settings.input
    top = obj(event_tree(settings, feature_names, "JSON Schema"))
    top["properties"] = {s.id_field: {"type": "string"}, **top["properties"]}
    if s.ts_field is not None:
        top["properties"][s.ts_field] = {"type": "number"}
    top["required"] = list(top["properties"])
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Event", **top}
    return json.dumps(schema)


def event_serializer(
    format: str, settings: Settings, feature_names: Sequence[str], client: Any = None
) -> Callable[[dict[str, Any]], bytes]:
    """A function of a produced event (``{"id", "features", "ts"}``) to its framed record in
    ``format`` (avro, protobuf or json_schema); ``client``: the registry's (default: a client
    of ``schema_registry``)."""
    if format == "avro" and client is None:
        return avro_event_serializer(settings, feature_names)
    if settings.schema_registry.url is None and client is None:
        raise ConfigError("--format", f"{format} needs schema_registry.url in the config")
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.serialization import MessageField, SerializationContext

    if client is None:
        client = SchemaRegistryClient(settings.schema_registry.client_config())
    context = SerializationContext(settings.topics.input, MessageField.VALUE)
    serialize: Callable[[Any, Any], bytes | None]
    if format == "protobuf":
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer

        kind = "Protobuf"
        make = protobuf_event_class(settings, feature_names)
        serializer = ProtobufSerializer(make, client, {"use.deprecated.format": False})
        serialize = lambda doc, ctx: serializer(make(**doc), ctx)  # noqa: E731
    elif format == "json_schema":
        from confluent_kafka.schema_registry.json_schema import JSONSerializer

        kind = "JSON Schema"
        serialize = JSONSerializer(json_schema_event_schema(settings, feature_names), client)
    else:
        from confluent_kafka.schema_registry.avro import AvroSerializer

        from worker.tools.produce_avro import avro_event_schema

        kind = "Avro"
        serialize = AvroSerializer(client, avro_event_schema(settings, feature_names))
    build = event_builder(settings, feature_names, kind)

    def encode(event: dict[str, Any]) -> bytes:
        framed = serialize(build(event), context)
        assert isinstance(framed, bytes)
        return framed

    return encode
