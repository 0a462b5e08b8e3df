"""Where a dotted field path leads in a writer schema, and whether it holds a number."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["avro_problem", "json_schema_problem", "protobuf_problem"]

_AVRO_NUMBERS = frozenset({"int", "long", "float", "double"})
_JSON_NUMBERS = frozenset({"number", "integer"})


#: What an event time may also be in Avro: a long counting from the epoch, in UTC.
AVRO_TIMES = frozenset({"long (timestamp-millis)", "long (timestamp-micros)"})


def avro_problem(
    schema_str: str, path: str, *, numeric: bool = True, time: bool = False
) -> str | None:
    """Why ``path`` is not a (numeric) field of the Avro record ``schema_str``, or None; with
    ``time``, a ``timestamp-millis`` or ``timestamp-micros`` long is one too."""
    node: Any = json.loads(schema_str)
    named = _avro_names(node, "")
    walked: list[str] = []
    for part in path.split("."):
        node = _avro_record(node, named)
        if node is None:
            return f"field {'.'.join(walked)!r} is not a record, so it has no {part!r}"
        found = [f for f in node.get("fields", []) if f.get("name") == part]
        if not found:
            walked.append(part)
            return f"no field {'.'.join(walked)!r} in the writer schema"
        walked.append(part)
        node = found[0]["type"]
    if not numeric:
        return None
    kind = _avro_kind(node)
    if kind not in _AVRO_NUMBERS and not (time and kind in AVRO_TIMES):
        return f"field {path!r} is {kind}, not a number"
    return None


def _avro_names(node: Any, namespace: str) -> dict[str, Any]:
    """Every named type ``node`` defines, by full and by short name (a type may be given by
    either after its definition)."""
    names: dict[str, Any] = {}
    if isinstance(node, list):
        for branch in node:
            names.update(_avro_names(branch, namespace))
    elif isinstance(node, dict):
        if node.get("type") in ("record", "enum", "fixed") and "name" in node:
            name = str(node["name"])
            if "." not in name:
                namespace = str(node.get("namespace", namespace) or "")
                name = f"{namespace}.{name}" if namespace else name
            else:
                namespace = name.rpartition(".")[0]
            names[name] = names[name.rpartition(".")[2]] = node
        for field in node.get("fields", []) if node.get("type") == "record" else []:
            names.update(_avro_names(field.get("type"), namespace))
        if isinstance(node.get("type"), dict | list):
            names.update(_avro_names(node["type"], namespace))
    return names


def _avro_record(node: Any, named: dict[str, Any]) -> dict[str, Any] | None:
    if isinstance(node, str):
        node = named.get(node, node)
    if isinstance(node, list):  # a union: its one record branch (["null", {record}])
        branches = [named.get(n, n) if isinstance(n, str) else n for n in node]
        records = [n for n in branches if isinstance(n, dict) and n.get("type") == "record"]
        return records[0] if len(records) == 1 else None
    if isinstance(node, dict) and node.get("type") == "record":
        return node
    return None


def _avro_kind(node: Any) -> str:
    if isinstance(node, list):  # ["null", "double"] is a number or null (null: dead letter)
        kinds = [_avro_kind(n) for n in node if n != "null"]
        return kinds[0] if len(kinds) == 1 else "a union of " + ", ".join(kinds)
    if isinstance(node, dict):
        if node.get("logicalType"):
            return f"{node['type']} ({node['logicalType']})"
        return _avro_kind(node.get("type"))
    return str(node)


def json_schema_problem(schema_str: str, path: str, *, numeric: bool = True) -> str | None:
    """Why ``path`` is not a (numeric) property of the JSON Schema ``schema_str``, or None."""
    node: Any = json.loads(schema_str)
    walked: list[str] = []
    for part in path.split("."):
        properties = node.get("properties") if isinstance(node, dict) else None
        walked.append(part)
        if not isinstance(properties, dict) or part not in properties:
            return f"no property {'.'.join(walked)!r} in the writer schema"
        node = properties[part]
    if not numeric:
        return None
    kinds = node.get("type") if isinstance(node, dict) else None
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    real = [k for k in kinds if k != "null"]
    if not real or not set(real) <= _JSON_NUMBERS:
        return f"property {path!r} is {'/'.join(kinds) or 'untyped'}, not a number"
    return None


def protobuf_problem(descriptor: Any, path: str, *, numeric: bool = True) -> str | None:
    """Why ``path`` is not a (numeric) field of the message ``descriptor``, or None."""
    from google.protobuf.descriptor import FieldDescriptor

    numbers = {
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
        FieldDescriptor.CPPTYPE_DOUBLE,
        FieldDescriptor.CPPTYPE_FLOAT,
    }
    walked: list[str] = []
    field = None
    for part in path.split("."):
        if descriptor is None:
            return f"field {'.'.join(walked)!r} is not a message, so it has no {part!r}"
        walked.append(part)
        field = descriptor.fields_by_name.get(part)
        if field is None:
            return f"no field {'.'.join(walked)!r} in the writer schema"
        descriptor = field.message_type
    if not numeric or field is None:
        return None
    repeated = bool(getattr(field, "is_repeated", False))
    if field.cpp_type not in numbers or repeated:
        kind = "repeated " if repeated else ""
        kind += field.message_type.name if field.message_type else _PROTO_TYPES[field.type]
        return f"field {path!r} is {kind}, not a number"
    return None


_PROTO_TYPES = {
    1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32",
    8: "bool", 9: "string", 10: "group", 11: "message", 12: "bytes", 13: "uint32", 14: "enum",
    15: "sfixed32", 16: "sfixed64", 17: "sint32", 18: "sint64",
}  # fmt: skip
