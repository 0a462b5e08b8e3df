"""``streamfuse produce --format avro``: events as Confluent-framed Avro, the way a team's own
producer writes them (confluent-kafka's ``AvroSerializer``, the schema registered under
``<topic>-value``), so the demo and backtests exercise the worker's registry path.

The schema is generated from where the worker looks: each feature at its ``input.fields`` path
(or its own name), nested records for dotted paths, the id at ``input.id_field`` and the event
time at ``input.ts_field`` when set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from worker.config import Settings
from worker.errors import ConfigError

__all__ = ["avro_event_schema", "avro_event_serializer", "event_builder", "event_tree"]

_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _paths(settings: Settings, feature_names: Sequence[str], kind: str = "Avro") -> list[str]:
    renames = settings.input.fields
    paths = [renames.get(n, n) for n in feature_names]
    for name, path in zip(feature_names, paths, strict=True):
        bad = [part for part in path.split(".") if not _AVRO_NAME.match(part)]
        if bad:
            raise ConfigError(
                "--format",
                f"feature {name!r} would be the {kind} field {path!r}, not a valid {kind} name "
                f"({bad[0]!r}); map it with input.fields, e.g. {{{name!r}: "
                f"'features.{re.sub(r'[^A-Za-z0-9_]', '_', name)}'}}",
            )
    return paths


def event_tree(
    settings: Settings, feature_names: Sequence[str], kind: str = "Avro"
) -> dict[str, Any]:
    """The features' fields as a tree of nested records: a leaf is ``"double"``."""
    tree: dict[str, Any] = {}
    for path in _paths(settings, feature_names, kind):
        node = tree
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError("input.fields", f"{path!r} reaches into a number")
        node[leaf] = "double"
    return tree


def avro_event_schema(settings: Settings, feature_names: Sequence[str]) -> str:
    """The Avro schema of an event: the features at their paths, doubles; id and time."""
    tree = event_tree(settings, feature_names)

    def record(name: str, node: dict[str, Any]) -> dict[str, Any]:
        fields = [
            {"name": k, "type": v if isinstance(v, str) else record(k.capitalize(), v)}
            for k, v in node.items()
        ]
        return {"type": "record", "name": name, "fields": fields}

    top = record("Event", tree)
    s = settings.input
    top["namespace"] = "streamfuse.produce"
    top["fields"].insert(0, {"name": s.id_field, "type": "string"})
    if s.ts_field is not None:
        top["fields"].append({"name": s.ts_field, "type": "double"})
    return json.dumps(top)


def avro_event_serializer(
    settings: Settings, feature_names: Sequence[str]
) -> Callable[[dict[str, Any]], bytes]:
    """A function of a produced event (``{"id", "features", "ts"}``) to its framed Avro."""
    if settings.schema_registry.url is None:
        raise ConfigError("--format", "avro needs schema_registry.url in the config")
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = SchemaRegistryClient(settings.schema_registry.client_config())
    serialize = AvroSerializer(client, avro_event_schema(settings, feature_names))
    context = SerializationContext(settings.topics.input, MessageField.VALUE)
    build = event_builder(settings, feature_names)

    def encode(event: dict[str, Any]) -> bytes:
        framed = serialize(build(event), context)
        assert isinstance(framed, bytes)
        return framed

    return encode


def event_builder(
    settings: Settings, feature_names: Sequence[str], kind: str = "Avro"
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function of a produced event (``{"id", "features", "ts"}``) to the nested document
    of its schema: the features at their paths, the id and the time at their fields."""
    paths = _paths(settings, feature_names, kind)
    s = settings.input

    def build(event: dict[str, Any]) -> dict[str, Any]:
        features = event["features"]
        values = [features[n] for n in feature_names] if isinstance(features, dict) else features
        doc: dict[str, Any] = {s.id_field: str(event["id"])}
        for path, value in zip(paths, values, strict=True):
            node = doc
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = float(value)
        if s.ts_field is not None:
            doc[s.ts_field] = float(event["ts"])
        return doc

    return build
