"""JSON Schema records decoded a group at a time: orjson for the bodies, one compiled validator.

confluent-kafka's ``JSONDeserializer`` validates each record with ``jsonschema``, about 115 us
for a record of 32 numbers; fastjsonschema compiles the same schema to Python once and checks
one in about 5. It is used only where the two agree: a schema of the keywords below (no
``$ref``, no references to other subjects, nothing remote to fetch), ``format`` left as an
annotation (as ``jsonschema`` leaves it), defaults never filled in. Any record that does not
load or validate this way sends the whole group to the deserializer record by record, so a bad
record's reason is still the deserializer's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import orjson

__all__ = ["compiled_validator", "decode_group"]

log = logging.getLogger("streamfuse.schemas")

#: Keywords whose meaning is the same in drafts 6, 7, 2019-09 and 2020-12 (draft 4 only when
#: the schema says it is draft 4: its ``exclusiveMinimum`` is a boolean); ``items`` only as one
#: schema (a list of them is ``prefixItems`` since 2020-12).
_KEYWORDS = frozenset(
    {
        "$schema", "$id", "$comment", "title", "description", "default", "examples",
        "deprecated", "readOnly", "writeOnly", "format", "type", "enum", "const",
        "properties", "required", "additionalProperties", "patternProperties",
        "propertyNames", "minProperties", "maxProperties", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
        "items", "minItems", "maxItems", "uniqueItems", "allOf", "anyOf", "oneOf", "not",
    }
)  # fmt: skip
_DRAFTS = {
    "http://json-schema.org/draft-04/schema": "draft-04",
    "http://json-schema.org/draft-06/schema": "draft-06",
    "http://json-schema.org/draft-07/schema": "draft-07",
    "https://json-schema.org/draft/2019-09/schema": "draft-07",
    "https://json-schema.org/draft/2020-12/schema": "draft-07",
}
_BY_NAME = ("properties", "patternProperties")
_SUBSCHEMA = ("additionalProperties", "propertyNames", "not", "items")
_SUBSCHEMAS = ("allOf", "anyOf", "oneOf")


def compiled_validator(schema: Any) -> Callable[[Any], Any] | None:
    """A fastjsonschema validator for ``schema`` (the parsed writer schema), or None where the
    deserializer must check records itself: fastjsonschema not installed, a keyword outside
    the common set, a ``$schema`` other than the five drafts, or a schema it cannot compile."""
    if not isinstance(schema, dict) or not _plain(schema, root=True):
        return None
    said = str(schema.get("$schema", "https://json-schema.org/draft/2020-12/schema"))
    draft = _DRAFTS.get(said.rstrip("#"))
    if draft is None:
        return None
    try:
        import fastjsonschema
    except ImportError:
        return None
    definition = {**schema, "$schema": f"http://json-schema.org/{draft}/schema#"}
    try:
        return fastjsonschema.compile(definition, handlers={}, use_default=False, use_formats=False)
    except Exception as exc:  # a schema it cannot compile: the deserializer checks records
        log.debug("JSON Schema not compiled (%s): records checked one by one", exc)
        return None


def _plain(schema: Any, root: bool = False) -> bool:
    if isinstance(schema, bool):
        return not root
    if not isinstance(schema, dict) or not set(schema) <= _KEYWORDS:
        return False
    if "$id" in schema and not root:
        return False  # a new base URI inside: resolution rules differ by draft
    for key in _BY_NAME:
        inner = schema.get(key, {})
        if not isinstance(inner, dict) or not all(map(_plain, inner.values())):
            return False
    if not all(_plain(schema[key]) for key in _SUBSCHEMA if key in schema):
        return False
    for key in _SUBSCHEMAS:
        inner = schema.get(key, [])
        if not isinstance(inner, list) or not all(map(_plain, inner)):
            return False
    return True


def decode_group(values: Sequence[bytes], validate: Callable[[Any], Any]) -> list[Any] | None:
    """Every record's object (its JSON after the 5-byte frame), or None if one does not load
    or validate."""
    try:
        docs = list(map(orjson.loads, map(itemgetter(slice(5, None)), values)))
        for _ in map(validate, docs):
            pass
    except Exception:  # any failure: the record-by-record path says which
        return None
    return docs
