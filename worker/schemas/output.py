"""Predictions in Avro behind the Confluent framing (``output.format: avro``).

The schema is generated from what is served and mirrors the JSON document of
:func:`worker.batch.encode.encode_predictions` field for field, so an Avro prediction read back
with confluent-kafka's ``AvroDeserializer`` equals the JSON one (a field JSON leaves out reads
back as null): per-model entries and shadows are Avro maps keyed by name, so serving other
models or strategies keeps the same layout. It is registered under the subject of
``output.subject_strategy`` at start-up and every record is encoded by confluent-kafka's
``AvroSerializer`` with that schema id (framing included): no hand-written wire format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

__all__ = [
    "OUTPUT_RECORD",
    "AvroOutput",
    "output_schema",
    "output_subject",
    "schema_for_serving",
]

OUTPUT_RECORD = "streamfuse.Prediction"

_LABEL: list[Any] = ["long", "double", "string", "boolean"]
_SCORES = ["null", {"type": "array", "items": "double"}, {"type": "map", "values": "double"}]
_CLASSES = ["null", {"type": "array", "items": _LABEL}]


def output_schema(model_names: Sequence[str], classes: Sequence[Any] | None) -> str:
    """The Avro schema of a prediction; the models and classes served are named in its docs."""
    model = {
        "type": "record",
        "name": "ModelOutput",
        "fields": [
            {"name": "prediction", "type": ["null", *_LABEL], "default": None},
            {"name": "scores", "type": _SCORES, "default": None},
            {"name": "classes", "type": _CLASSES, "default": None},
            {"name": "error", "type": ["null", "string"], "default": None},
            {"name": "version", "type": "long"},
        ],
    }
    served = f"models: {', '.join(model_names)}"
    if classes is not None:
        served += f"; classes: {', '.join(map(str, classes))}"
    schema = {
        "type": "record",
        "name": "Prediction",
        "namespace": "streamfuse",
        "doc": f"A streamfuse prediction ({served}).",
        "fields": [
            {"name": "id", "type": ["string", "long"]},
            {"name": "prediction", "type": _LABEL},
            {"name": "scores", "type": _SCORES, "default": None},
            {"name": "classes", "type": _CLASSES, "default": None},
            {"name": "strategy", "type": "string"},
            {"name": "models", "type": {"type": "map", "values": model}},
            {
                "name": "shadow",
                "type": ["null", {"type": "map", "values": ["null", *_LABEL]}],
                "default": None,
            },
            {"name": "degraded", "type": "boolean"},
            {"name": "latency_ms", "type": "double"},
        ],
    }
    return json.dumps(schema)


def schema_for_serving(serving: Any) -> tuple[str | None, str]:
    """The output schema of a :class:`worker.inference.serving.Serving`, or None and why."""
    layout = serving.layout
    if layout.is_multitask:
        return None, "multi-task models have no Avro output yet"
    return output_schema(serving.names, layout.blocks[0].classes), ""


def output_subject(topic: str, strategy: str) -> str:
    """The subject of ``output.subject_strategy`` (Confluent's three name strategies)."""
    if strategy == "topic":
        return f"{topic}-value"
    if strategy == "record":
        return OUTPUT_RECORD
    return f"{topic}-{OUTPUT_RECORD}"


class AvroOutput:
    """Registers the output schema and encodes a batch's JSON documents as framed Avro."""

    format = "avro"

    def __init__(self, client: Any, topic: str, strategy: str, schema_str: str) -> None:
        from confluent_kafka.schema_registry import (
            Schema,
            record_subject_name_strategy,
            topic_record_subject_name_strategy,
            topic_subject_name_strategy,
        )
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        self._client, self._schema_class, self._serializer_class = client, Schema, AvroSerializer
        self.subject = output_subject(topic, strategy)
        self.schema_str = schema_str
        self.schema_id: int = client.register_schema(self.subject, Schema(schema_str, "AVRO"))
        self._conf: dict[str, Any] = {
            "auto.register.schemas": False,
            "use.schema.id": self.schema_id,
            "subject.name.strategy": {
                "topic": topic_subject_name_strategy,
                "record": record_subject_name_strategy,
                "topic_record": topic_record_subject_name_strategy,
            }[strategy],
        }
        self._serialize = AvroSerializer(client, schema_str, conf=self._conf)
        self._context = SerializationContext(topic, MessageField.VALUE)

    def relayout(self, schema_str: str | None, why_not: str = "") -> str | None:
        """Before a hot reload swaps in a new snapshot: its output schema (None: it has none,
        ``why_not`` says why) registered as a new version when it differs and the subject's
        compatibility accepts it; returns why the reload must be refused, else None."""
        if schema_str is None:
            return f"the Avro output cannot carry it: {why_not}"
        if schema_str == self.schema_str:
            return None
        schema = self._schema_class(schema_str, "AVRO")
        try:
            if not self._client.test_compatibility(self.subject, schema):
                return f"its output schema is not compatible with subject {self.subject}"
            schema_id = self._client.register_schema(self.subject, schema)
        except Exception as exc:  # the registry refused or did not answer: keep serving
            return f"cannot register its output schema under {self.subject}: {exc}"
        conf = {**self._conf, "use.schema.id": schema_id}
        self._serialize = self._serializer_class(self._client, schema_str, conf=conf)
        self.schema_str, self.schema_id = schema_str, schema_id
        return None

    def encode(self, documents: Sequence[bytes]) -> list[bytes]:
        """The framed Avro of each JSON document, in order (``ValueError`` when one does not
        fit the schema: the caller dead-letters the batch at ``encode``)."""
        serialize, context, loads = self._serialize, self._context, orjson.loads
        out: list[bytes] = []
        for document in documents:
            try:
                value = serialize(loads(document), context)
            except Exception as exc:  # fastavro's and the serializer's own errors alike
                raise ValueError(f"not valid for the output schema: {exc}") from exc
            if value is None:
                raise ValueError("the serializer returned nothing")
            out.append(value)
        return out
