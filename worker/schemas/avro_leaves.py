"""An Avro record schema's leaves in wire order, each with a kind the numpy reader
(:mod:`worker.schemas.avro_table`) knows how to step over or read.

A kind is an Avro type name (``double``, ``long``, ``string``, ``boolean``, ``bytes``),
``enum:<symbols>``, ``fixed:<size>``, a base type and its logical type (``long@date``), with
``?`` before it for ``["null", T]`` and after it for ``[T, "null"]``. Nested records are walked
into (their leaves' paths dotted); a type given by name is followed to its definition, as Avro
resolves names (full, or short in the enclosing namespace). Anything else (arrays, maps, other
unions, a record that may be null or holds itself) makes the schema unreadable here: None.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NUMBERS", "PRIMITIVE", "record_leaves"]

NUMBERS = ("double", "float", "int", "long")
PRIMITIVE = {*NUMBERS, "boolean", "string", "bytes"}


def record_leaves(schema: Any) -> list[tuple[str, str]] | None:
    """The leaves of the record ``schema`` (its JSON, as loaded), or None."""
    named: dict[str, Any] = {}
    if not isinstance(schema, dict) or not _define(schema, named, "", True):
        return None
    return _leaves(schema, "", named, "")


def _leaves(
    schema: Any,
    prefix: str,
    named: dict[str, Any],
    namespace: str,
    inside: frozenset[str] = frozenset(),
) -> list[tuple[str, str]] | None:
    """A record's leaves in wire order, or None if one has a type not read here. ``named``
    holds the named types defined so far, as Avro resolves a type given by name: its full and
    its short name to ``(definition, namespace)``; ``inside`` the records being walked."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    full, namespace = _name(schema, namespace)
    if full in inside:
        return None  # a record that holds itself
    leaves: list[tuple[str, str]] = []
    for field in schema.get("fields", []):
        path = prefix + field["name"]
        kind, where = _resolve(field["type"], named, namespace)
        if isinstance(kind, dict) and kind.get("type") == "record":
            if not _define(kind, named, where, field["type"] is kind):
                return None
            inner = _leaves(kind, path + ".", named, where, inside | {full})
            if inner is None:
                return None
            leaves += inner
            continue
        nullable = ""
        if isinstance(kind, list) and len(kind) == 2 and "null" in kind:
            [branch] = [k for k in kind if k != "null"]
            nullable = "?" if kind[0] == "null" else "!"
            kind, where = _resolve(branch, named, namespace)
            if isinstance(kind, dict) and kind.get("type") == "record":
                return None  # a record that may be null
        leaf = _leaf(kind, named, where, _inline(field["type"], kind))
        if leaf is None:
            return None  # arrays, maps, other unions
        # The null branch's side marks it: "?double" is ["null", "double"], "double?" the other.
        leaves.append((path, {"": leaf, "?": f"?{leaf}", "!": f"{leaf}?"}[nullable]))
    return leaves


def _inline(given: Any, kind: Any) -> bool:
    """Whether ``kind`` is defined where it is given (not named): then it is defined here."""
    if given is kind:
        return True
    return isinstance(given, list) and any(branch is kind for branch in given)


def _name(schema: dict[str, Any], namespace: str) -> tuple[str, str]:
    """The full name of a named type, and its namespace (the enclosing one by default)."""
    name = str(schema.get("name", ""))
    if "." in name:
        namespace = name.rpartition(".")[0]
        return name, namespace
    namespace = str(schema.get("namespace", namespace) or "")
    return (f"{namespace}.{name}" if namespace else name), namespace


def _define(schema: dict[str, Any], named: dict[str, Any], namespace: str, inline: bool) -> bool:
    """Record the named type ``schema`` defines (when ``inline``); False if its name is taken
    by another definition."""
    if not inline:
        return True
    full, namespace = _name(schema, namespace)
    if full in named:
        return bool(named[full][0] == schema)  # written out again where used: the same type
    short = full.rpartition(".")[2]
    named[full] = (schema, namespace)
    named[short] = None if short in named else (schema, namespace)  # ambiguous: full only
    return True


def _resolve(kind: Any, named: dict[str, Any], namespace: str) -> tuple[Any, str]:
    """``kind`` with a named type's name replaced by its definition (and the namespace it was
    defined in), and ``{"type": T}`` by T (a logical type is kept as the dict)."""
    if isinstance(kind, str) and kind not in PRIMITIVE and kind != "null":
        found = named.get(f"{namespace}.{kind}") or named.get(kind)
        return found if found is not None else (kind, namespace)
    if isinstance(kind, dict) and set(kind) == {"type"}:
        return _resolve(kind["type"], named, namespace)
    return kind, namespace


def _leaf(kind: Any, named: dict[str, Any], namespace: str, inline: bool) -> str | None:
    """The kind string of a leaf type (see :class:`AvroTable`), or None if not read here."""
    if isinstance(kind, str):
        return kind if kind in PRIMITIVE else None
    if not isinstance(kind, dict):
        return None
    base = kind.get("type")
    if base == "enum":
        symbols = kind.get("symbols")
        if not isinstance(symbols, list) or not _define(kind, named, namespace, inline):
            return None
        return f"enum:{len(symbols)}"
    if base == "fixed":
        size = kind.get("size")
        if type(size) is not int or size < 0 or not _define(kind, named, namespace, inline):
            return None
        return f"fixed:{size}"
    if base in PRIMITIVE:
        logical = kind.get("logicalType")
        return f"{base}@{logical}" if isinstance(logical, str) else str(base)
    return None
