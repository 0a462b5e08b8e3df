"""Input headers carried onto the output: an allow-list, and the W3C trace context continued.

``output.headers`` names (or glob patterns) of input headers copied onto the prediction and the
dead letter of each record; a valid W3C ``traceparent`` (https://www.w3.org/TR/trace-context/)
is continued: the same trace id and flags, a new span id (its ``tracestate`` copied beside it).
A malformed ``traceparent`` is not copied and is not an error. The worker's own headers
(``streamfuse.*``) are never copied from the input.

Nothing runs per record when no header is allow-listed and the trace context is off
(:func:`HeaderCarry.build` returns None); otherwise the work per record is a look-up per
header it has (each header name is matched against the patterns once, then remembered).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from fnmatch import translate
from typing import Any

__all__ = ["HeaderCarry", "continue_traceparent", "traceparent_ids"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_OWN_PREFIX = "streamfuse."
_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\Z")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


def continue_traceparent(value: bytes | None, span_id: bytes) -> bytes | None:
    """The ``traceparent`` of a child of ``value``: same trace id and flags, ``span_id`` (16
    lowercase hex digits) as the parent id; None when ``value`` is not a valid traceparent.

    Version 00 is exactly four fields; a later version may carry more, which are dropped (the
    output is version 00); version ff, an all-zero trace id or parent id are invalid.
    """
    fields = _valid(value)
    if fields is None:
        return None
    trace_id, _, flags = fields
    return b"00-" + trace_id + b"-" + span_id + b"-" + flags


def traceparent_ids(value: bytes | None) -> tuple[int, int, int] | None:
    """The trace id, parent span id and flags of a valid ``traceparent``, else None (the same
    rules as :func:`continue_traceparent`)."""
    fields = _valid(value)
    if fields is None:
        return None
    trace_id, parent_id, flags = fields
    return int(trace_id, 16), int(parent_id, 16), int(flags, 16)


def _valid(value: bytes | None) -> tuple[bytes, bytes, bytes] | None:
    if not value:
        return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, parent_id, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id, parent_id, flags


class HeaderCarry:
    """Which input headers a record's outputs carry (see the module's docstring)."""

    def __init__(self, patterns: Sequence[str], trace_context: bool) -> None:
        self.patterns = tuple(patterns)
        self.trace_context = trace_context
        regex = "|".join(translate(p) for p in self.patterns)
        self._match = re.compile(regex).match if regex else None
        self._copied: dict[str, bool] = {}

    @classmethod
    def build(cls, patterns: Sequence[str], trace_context: bool) -> HeaderCarry | None:
        """None when there is nothing to carry: the pipeline then reads no header at all."""
        if not patterns and not trace_context:
            return None
        return cls(patterns, trace_context)

    def _copies(self, name: str) -> bool:
        copied = self._copied.get(name)
        if copied is None:
            copied = (
                self._match is not None
                and name not in (TRACEPARENT, TRACESTATE)
                and not name.startswith(_OWN_PREFIX)
                and self._match(name) is not None
            )
            if len(self._copied) < 10_000:  # names come from the producers: bound the memory
                self._copied[name] = copied
        return copied

    def carried(self, records: Sequence[Any]) -> list[list[tuple[str, bytes]]]:
        """Per record, in order, the headers its outputs get (empty lists for records without
        headers). One ``os.urandom`` call gives the batch's new span ids."""
        spans = os.urandom(8 * len(records)).hex().encode() if self.trace_context else b""
        out: list[list[tuple[str, bytes]]] = []
        copies = self._copies
        for i, record in enumerate(records):
            headers = record.headers
            if not headers:
                out.append([])
                continue
            kept: list[tuple[str, bytes]] = []
            parent: bytes | None = None
            state: bytes | None = None
            for name, value in headers:
                if name == TRACEPARENT:
                    parent = value
                elif name == TRACESTATE:
                    state = value
                elif copies(name):
                    kept.append((name, value if value is not None else b""))
            if self.trace_context and parent is not None:
                child = continue_traceparent(parent, spans[16 * i : 16 * i + 16])
                if child is not None:
                    kept.append((TRACEPARENT, child))
                    if state is not None:
                        kept.append((TRACESTATE, state))
            out.append(kept)
        return out
