"""Bounded JSON parsing and the canonical bytes that signatures cover."""

from __future__ import annotations

import json
from typing import Any

from ._refused import Refused

__all__ = ["canonical_bytes", "json_depth", "parse_json"]


def json_depth(obj: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json(data: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """``json.loads`` with a size cap, a depth cap, and only ``ValueError`` on failure.

    Python's parser recurses once per nesting level, so a document nested 100,000 deep raises
    ``RecursionError`` inside it; that and bad UTF-8 are refused like any other non-JSON.
    """
    if len(data) > max_bytes:
        raise Refused(f"{len(data)} bytes, over the cap of {max_bytes}")
    try:
        obj = json.loads(data)
    except RecursionError as exc:
        raise Refused("nested too deeply to parse") from exc
    except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise Refused(f"not JSON: {exc}") from exc
    if json_depth(obj) > max_depth:
        raise Refused(f"nested deeper than {max_depth} levels")
    return obj


def canonical_bytes(purpose: str, obj: Any) -> bytes:
    """What a signature covers: a purpose line, then sorted, compact, ASCII JSON.

    The purpose (``"streamfuse.manifest/1"``, ``"streamfuse.pointer/1"``) keeps a signed
    pointer from passing as a signed manifest and the other way round.
    """
    body = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return purpose.encode("ascii") + b"\n" + body.encode("ascii")
