"""A bounded reader of the UBJSON subset XGBoost writes (``Booster.save_raw("ubj")``).

Only the store reads it, to check a model before XGBoost sees it. Every count is checked
against the bytes left before anything is allocated, nesting is capped, object keys must be
unique (a duplicate could make the store and XGBoost see different models), and anything
outside the subset (high-precision numbers, no-ops, a count without a type) is refused.
"""

from __future__ import annotations

import struct
from typing import Any

from ._refused import Refused

__all__ = ["parse_ubjson"]

_INTS = {b"i": (1, ">b"), b"U": (1, ">B"), b"I": (2, ">h"), b"l": (4, ">i"), b"L": (8, ">q")}
_FLOATS = {b"d": (4, ">f"), b"D": (8, ">d")}
_NUMBERS = {**_INTS, **_FLOATS}


class _Reader:
    def __init__(self, data: bytes, max_depth: int, max_items: int | None) -> None:
        self.data, self.pos, self.max_depth = memoryview(data), 0, max_depth
        self.items_left = len(data) if max_items is None else max_items

    def spend(self, n: int) -> None:
        self.items_left -= n
        if self.items_left < 0:
            raise Refused(f"more values than the cap, at byte {self.pos}")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Refused(f"truncated at byte {self.pos}")
        out = self.data[self.pos : self.pos + n].tobytes()
        self.pos += n
        return out

    def marker(self) -> bytes:
        return self.take(1)

    def count(self) -> int:
        kind = self.marker()
        if kind not in _INTS:
            raise Refused(f"a length of type {kind!r} at byte {self.pos}")
        size, fmt = _INTS[kind]
        (n,) = struct.unpack(fmt, self.take(size))
        if n < 0 or n > len(self.data) - self.pos:
            raise Refused(f"a length of {n} at byte {self.pos}, more than the bytes left")
        return int(n)

    def string(self) -> str:
        raw = self.take(self.count())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refused(f"a string that is not UTF-8 at byte {self.pos}") from exc

    def value(self, kind: bytes, depth: int) -> Any:
        self.spend(1)
        if kind in _NUMBERS:
            size, fmt = _NUMBERS[kind]
            return struct.unpack(fmt, self.take(size))[0]
        if kind == b"S":
            return self.string()
        if kind in (b"T", b"F"):
            return kind == b"T"
        if kind == b"Z":
            return None
        if kind in (b"[", b"{"):
            if depth >= self.max_depth:
                raise Refused(f"nested deeper than {self.max_depth} levels")
            return self.container(kind == b"{", depth + 1)
        raise Refused(f"unsupported marker {kind!r} at byte {self.pos - 1}")

    def peek(self) -> bytes:
        """The next byte, not taken (empty at the end)."""
        return self.data[self.pos : self.pos + 1].tobytes()

    def container(self, is_object: bool, depth: int) -> Any:
        item_type: bytes | None = None
        n: int | None = None
        if self.peek() == b"$":
            self.pos += 1
            item_type = self.marker()
            if self.marker() != b"#":
                raise Refused("a typed container without a count")
            n = self.count()
        elif self.peek() == b"#":
            self.pos += 1
            n = self.count()
        if item_type in _NUMBERS and not is_object and n is not None:
            size, fmt = _NUMBERS[item_type]
            if n * size > len(self.data) - self.pos:
                raise Refused(f"an array of {n} numbers longer than the bytes left")
            self.spend(n)
            raw = self.take(n * size)
            return list(struct.unpack(f">{n}{fmt[1]}", raw))
        out: Any = {} if is_object else []
        i = 0
        while n is None or i < n:
            if n is None and self.peek() == (b"}" if is_object else b"]"):
                self.pos += 1
                return out
            if is_object:
                key = self.string()
                if key in out:
                    raise Refused(f"duplicate key {key!r}")
                out[key] = self.value(item_type or self.marker(), depth)
            else:
                out.append(self.value(item_type or self.marker(), depth))
            i += 1
        return out


def parse_ubjson(data: bytes, *, max_depth: int, max_items: int | None = None) -> Any:
    """The document in ``data`` (UBJSON, big-endian, XGBoost's subset); nothing may follow.

    ``max_items`` caps the values (containers, strings and numbers, those of typed arrays
    included) before each is built: a file of empty objects or untyped one-byte numbers
    costs Python objects 30 to 60 times its size.
    """
    reader = _Reader(data, max_depth, max_items)
    try:
        doc = reader.value(reader.marker(), 0)
    except struct.error as exc:
        raise Refused(f"malformed number: {exc}") from exc
    if reader.pos != len(data):
        raise Refused(f"{len(data) - reader.pos} bytes after the document")
    return doc
