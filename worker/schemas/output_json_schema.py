"""Predictions in JSON Schema behind the Confluent framing (``output.format: json_schema``).

The body is the JSON document the worker writes anyway (orjson's bytes, unchanged) behind the
frame of its registered schema; the schema is generated from what is served, its layout that of
:func:`worker.batch.encode.encode_predictions`. It is checked as a schema when made, and the
first document of each layout is validated against it: not every event (a prediction's layout
is fixed by the snapshot, so one document proves the rest).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from worker.schemas.output import OUTPUT_RECORD, RegisteredOutput

__all__ = ["JsonSchemaOutput", "json_output_schema"]

NUMBER = {"type": "number"}


def _label(classes: Sequence[Any] | None, n_outputs: int) -> dict[str, Any]:
    if classes is None:
        return NUMBER if n_outputs == 1 else {"type": "array", "items": NUMBER}
    kinds = {type(c) for c in classes}
    for python, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string")):
        if kinds == {python}:
            return {"type": name}
    return {"type": ["integer", "number", "string", "boolean"]}


def json_output_schema(
    model_names: Sequence[str],
    classes: Sequence[Any] | None,
    *,
    n_outputs: int = 1,
    scores_by_class: bool = False,
) -> str:
    """The JSON Schema (draft 7) of a prediction; the models and classes served in its
    description, as the Avro schema's doc."""
    label = _label(classes, n_outputs)
    extra: dict[str, Any] = {}
    if classes is not None:
        scores = (
            {"type": "object", "additionalProperties": NUMBER}
            if scores_by_class
            else {"type": "array", "items": NUMBER}
        )
        extra = {"scores": scores, "classes": {"type": "array", "items": label}}
    model = {
        "type": "object",
        "properties": {
            "prediction": label,
            **extra,
            "error": {"type": "string"},
            "version": {"type": "integer"},
        },
        "required": ["version"],
    }
    served = f"models: {', '.join(model_names)}"
    if classes is not None:
        served += f"; classes: {', '.join(map(str, classes))}"
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": OUTPUT_RECORD,
        "description": f"A streamfuse prediction ({served}).",
        "type": "object",
        "properties": {
            "id": {"type": ["string", "integer"]},
            "prediction": label,
            **extra,
            "strategy": {"type": "string"},
            "models": {"type": "object", "additionalProperties": model},
            "shadow": {"type": "object", "additionalProperties": label},
            "arm": {"enum": ["champion", "candidate"]},
            "degraded": {"type": "boolean"},
            "latency_ms": NUMBER,
        },
        "required": ["id", "prediction", "strategy", "models", "degraded", "latency_ms"],
    }
    return json.dumps(schema)


class JsonSchemaOutput(RegisteredOutput):
    """The JSON documents behind the frame of their registered JSON Schema."""

    format, schema_type, name = "json_schema", "JSON", "JSON Schema"

    @classmethod
    def output_schema(
        cls,
        model_names: Sequence[str],
        classes: Sequence[Any] | None,
        *,
        n_outputs: int = 1,
        scores_by_class: bool = False,
    ) -> str:
        return json_output_schema(
            model_names, classes, n_outputs=n_outputs, scores_by_class=scores_by_class
        )

    def _use(self, schema_str: str, schema_id: int) -> None:
        from confluent_kafka.schema_registry.common.serde import SchemaId
        from jsonschema import Draft7Validator  # type: ignore[import-untyped]

        schema = json.loads(schema_str)
        Draft7Validator.check_schema(schema)
        self._validator = Draft7Validator(schema)
        self._unchecked = True  # the first document of this layout is validated
        self._frame = SchemaId("JSON", schema_id).id_to_bytes()
        super()._use(schema_str, schema_id)

    def encode(self, documents: Sequence[bytes]) -> list[bytes]:
        if self._unchecked and documents:
            error = next(iter(self._validator.iter_errors(orjson.loads(documents[0]))), None)
            if error is not None:
                where = "/".join(map(str, error.absolute_path)) or "the document"
                raise ValueError(f"not valid for the output schema: {where}: {error.message}")
            self._unchecked = False
        return list(map(self._frame.__add__, documents))
