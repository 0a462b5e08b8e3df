"""Carried headers and the W3C trace context, without Kafka (worker.batch.headers)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from worker.batch.headers import HeaderCarry, continue_traceparent

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = b"00-" + TRACE + b"-00f067aa0ba902b7-01"
SPAN = b"1111111111111111"


@dataclass
class Rec:
    headers: list[tuple[str, bytes | None]] | None


def test_a_valid_traceparent_is_continued_with_its_trace_and_flags() -> None:
    assert continue_traceparent(PARENT, SPAN) == b"00-" + TRACE + b"-" + SPAN + b"-01"
    unsampled = PARENT[:-2] + b"00"
    assert continue_traceparent(unsampled, SPAN) == b"00-" + TRACE + b"-" + SPAN + b"-00"
    # a later version may carry more fields: continued as version 00
    assert continue_traceparent(b"01" + PARENT[2:] + b"-extra", SPAN) == (
        b"00-" + TRACE + b"-" + SPAN + b"-01"
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"garbage",
        PARENT.upper(),  # hex must be lowercase
        b"ff" + PARENT[2:],  # version ff is invalid
        PARENT + b"-more",  # version 00 has exactly four fields
        b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01",  # all-zero trace id
        b"00-" + TRACE + b"-" + b"0" * 16 + b"-01",  # all-zero parent id
        PARENT[:-1],  # cut short
        b"00-" + TRACE + b"-00f067aa0ba902b7-01\n",
    ],
)
def test_a_malformed_traceparent_is_not_continued(value: bytes | None) -> None:
    assert continue_traceparent(value, SPAN) is None


def test_patterns_select_headers_and_never_the_workers_own() -> None:
    carry = HeaderCarry(["x-tenant", "x-b3-*", "streamfuse.*", "trace*"], trace_context=False)
    out = carry.carried(
        [
            Rec(
                [
                    ("x-tenant", b"a"),
                    ("x-b3-spanid", b"b"),
                    ("x-other", b"c"),
                    ("streamfuse.error", b"d"),
                    ("traceparent", PARENT),
                    ("x-null", None),
                ]
            ),
            Rec(None),
            Rec([]),
        ]
    )
    # trace context off: a traceparent is not continued, and no pattern copies it as is
    assert out == [[("x-tenant", b"a"), ("x-b3-spanid", b"b")], [], []]


def test_each_record_gets_its_own_span_id() -> None:
    carry = HeaderCarry([], trace_context=True)
    out = carry.carried([Rec([("traceparent", PARENT)]) for _ in range(50)])
    spans = {dict(h)["traceparent"].split(b"-")[2] for h in out}
    assert len(spans) == 50
    assert all(dict(h)["traceparent"].split(b"-")[1] == TRACE for h in out)


def test_nothing_to_carry_builds_nothing() -> None:
    assert HeaderCarry.build((), trace_context=False) is None
    assert HeaderCarry.build(("x-*",), trace_context=False) is not None
    assert HeaderCarry.build((), trace_context=True) is not None
