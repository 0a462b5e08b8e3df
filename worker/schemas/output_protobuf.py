"""Predictions in Protobuf behind the Confluent framing (``output.format: protobuf``).

The message ``streamfuse.Prediction`` is generated at run time from what is served (a
``FileDescriptorProto`` built in code, its class from ``GetMessageClass``: no protoc) and
mirrors the JSON document field for field: per-model entries and shadows are maps keyed by
name, the label type follows the classes served, and every singular field has explicit
presence (proto3 ``optional``), so a message read back with confluent-kafka's
``ProtobufDeserializer`` holds exactly the fields of its JSON document (:func:`document_of`).
It is registered as confluent-kafka's serializers do (the base64 of the file descriptor); each
record is framed by ``SchemaId`` (schema id and message index 0).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import orjson

from worker.schemas.output import RegisteredOutput

__all__ = ["ProtobufOutput", "document_of", "protobuf_file"]

PACKAGE = "streamfuse"


def _label_type(classes: Sequence[Any] | None, n_outputs: int) -> int:
    from google.protobuf.descriptor_pb2 import FieldDescriptorProto as T

    if classes is None:
        if n_outputs != 1:
            raise ValueError("a regression of several outputs has no Protobuf output yet")
        return T.TYPE_DOUBLE
    kinds = {type(c) for c in classes}
    for python, proto in ((bool, T.TYPE_BOOL), (int, T.TYPE_INT64), (float, T.TYPE_DOUBLE)):
        if kinds == {python}:
            return proto
    if kinds == {str}:
        return T.TYPE_STRING
    raise ValueError(
        f"the classes served mix types ({', '.join(sorted(k.__name__ for k in kinds))}): "
        "no Protobuf output for them yet"
    )


def protobuf_file(
    classes: Sequence[Any] | None, *, n_outputs: int = 1, scores_by_class: bool = False
) -> Any:
    """The ``FileDescriptorProto`` of ``streamfuse.Prediction``. Field numbers are fixed
    whatever is served (a classification's ``scores`` and ``classes`` are absent for a
    regression), so a changed layout stays a compatible evolution where it can."""
    from google.protobuf import descriptor_pb2

    T = descriptor_pb2.FieldDescriptorProto
    label = _label_type(classes, n_outputs)
    file = descriptor_pb2.FileDescriptorProto(
        name="streamfuse/prediction.proto", package=PACKAGE, syntax="proto3"
    )
    top = file.message_type.add(name="Prediction")
    top.oneof_decl.add(name="event_id")

    def optional(message: Any, name: str, number: int, kind: int) -> None:
        """A singular field with explicit presence: its own synthetic oneof ``_<name>``."""
        message.oneof_decl.add(name=f"_{name}")
        message.field.add(
            name=name,
            number=number,
            type=kind,
            label=T.LABEL_OPTIONAL,
            proto3_optional=True,
            oneof_index=len(message.oneof_decl) - 1,
        )

    def map_field(message: Any, name: str, number: int, kind: int, type_name: str = "") -> None:
        entry = message.nested_type.add(name=f"{name.capitalize()}Entry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
        value = entry.field.add(name="value", number=2, type=kind, label=T.LABEL_OPTIONAL)
        if type_name:
            value.type_name = type_name
        full = f".{PACKAGE}.{message.name}.{entry.name}"
        if message is not top:
            full = f".{PACKAGE}.Prediction.{message.name}.{entry.name}"
        message.field.add(
            name=name, number=number, type=T.TYPE_MESSAGE, type_name=full, label=T.LABEL_REPEATED
        )

    def scores(message: Any) -> None:
        if classes is None:
            return
        if scores_by_class:
            map_field(message, "scores", 4, T.TYPE_DOUBLE)
        else:
            message.field.add(name="scores", number=4, type=T.TYPE_DOUBLE, label=T.LABEL_REPEATED)
        message.field.add(name="classes", number=5, type=label, label=T.LABEL_REPEATED)

    model = top.nested_type.add(name="ModelOutput")
    optional(model, "prediction", 3, label)
    scores(model)
    optional(model, "error", 6, T.TYPE_STRING)
    optional(model, "version", 7, T.TYPE_INT64)

    for name, number, kind in (("id", 1, T.TYPE_STRING), ("id_number", 2, T.TYPE_INT64)):
        top.field.add(name=name, number=number, type=kind, label=T.LABEL_OPTIONAL, oneof_index=0)
    optional(top, "prediction", 3, label)
    scores(top)
    optional(top, "strategy", 8, T.TYPE_STRING)
    map_field(top, "models", 9, T.TYPE_MESSAGE, f".{PACKAGE}.Prediction.ModelOutput")
    map_field(top, "shadow", 10, label)
    optional(top, "arm", 11, T.TYPE_STRING)
    optional(top, "degraded", 12, T.TYPE_BOOL)
    optional(top, "latency_ms", 13, T.TYPE_DOUBLE)
    return file


def message_class(schema_str: str) -> Any:
    """The class of the first message of a registered schema (the base64 of its file)."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    file = descriptor_pb2.FileDescriptorProto.FromString(base64.standard_b64decode(schema_str))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return GetMessageClass(
        pool.FindMessageTypeByName(f"{file.package}.{file.message_type[0].name}")
    )


def document_of(message: Any) -> dict[str, Any]:
    """The JSON document a ``streamfuse.Prediction`` was made from (the fields it holds)."""
    doc: dict[str, Any] = {}
    for field, value in message.ListFields():
        kind = field.message_type
        if kind is not None and kind.GetOptions().map_entry:
            nested = kind.fields_by_name["value"].message_type is not None
            doc[field.name] = {k: document_of(v) if nested else v for k, v in value.items()}
        elif kind is not None:
            doc[field.name] = document_of(value)
        elif field.is_repeated:
            doc[field.name] = list(value)
        else:
            doc[field.name] = value
    if "id_number" in doc:
        doc["id"] = doc.pop("id_number")
    return doc


class ProtobufOutput(RegisteredOutput):
    """Encodes a batch's JSON documents as framed Protobuf: each document's dict given to the
    generated class's constructor (upb fills nested messages and maps from dicts in C), then
    ``SerializeToString`` behind the frame."""

    format, schema_type, name = "protobuf", "PROTOBUF", "Protobuf"

    @classmethod
    def output_schema(
        cls,
        model_names: Sequence[str],
        classes: Sequence[Any] | None,
        *,
        n_outputs: int = 1,
        scores_by_class: bool = False,
    ) -> str:
        file = protobuf_file(classes, n_outputs=n_outputs, scores_by_class=scores_by_class)
        return base64.standard_b64encode(file.SerializeToString(deterministic=True)).decode()

    def _use(self, schema_str: str, schema_id: int) -> None:
        from confluent_kafka.schema_registry.common.serde import SchemaId

        self._message = message_class(schema_str)
        self._frame = SchemaId("PROTOBUF", schema_id, message_indexes=[0]).id_to_bytes()
        super()._use(schema_str, schema_id)

    def encode(self, documents: Sequence[bytes]) -> list[bytes]:
        make, frame, loads = self._message, self._frame, orjson.loads
        out: list[bytes] = []
        for document in documents:
            doc = loads(document)
            if type(doc.get("id")) is int:  # the id's other branch of the oneof
                doc["id_number"] = doc.pop("id")
            try:
                out.append(frame + make(**doc).SerializeToString())
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise ValueError(f"not valid for the output schema: {exc}") from exc
        return out
