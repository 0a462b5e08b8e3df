"""Decode and validate under random input (hypothesis): never an unhandled exception, and every
input position ends up exactly once either as a good event or as a rejection with a stage."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.faults.poison import corpus
from worker.batch.decode import DecodedBatch, Schema, decode_batch

N_FEATURES = 4
NAMED = Schema(N_FEATURES, ("a", "b", "c", "d"))
PLAIN = Schema(N_FEATURES)
FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # nothing written outside the tests' temporary space
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)
ids = st.one_of(
    st.text(max_size=300), st.integers(min_value=-(2**70), max_value=2**70), json_values
)
feature_lists = st.one_of(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=4, max_size=4),
    st.lists(json_values, max_size=6),
    json_values,
)
feature_maps = st.dictionaries(st.sampled_from("abcdez"), json_values | st.floats(), max_size=6)


@st.composite
def events(draw: st.DrawFn) -> bytes | None:
    """Near-valid events (json.dumps writes NaN/Infinity literals too), or raw bytes."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return None
    if kind <= 2:
        return draw(st.binary(max_size=200))
    doc: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        doc["id"] = draw(ids)
    if draw(st.integers(0, 9)):
        doc["features"] = draw(feature_lists | feature_maps)
    if draw(st.booleans()):
        doc["ts"] = draw(json_values)
    raw = json.dumps(doc, allow_nan=True).encode()
    if kind == 3 and raw:  # cut it anywhere
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == 4:  # flip a byte
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
    return raw


@st.composite
def valid_events(draw: st.DrawFn) -> bytes:
    doc = {
        "id": draw(st.one_of(st.text(min_size=1, max_size=20), st.integers(-(2**62), 2**62))),
        "features": draw(
            st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=4, max_size=4)
        ),
    }
    return json.dumps(doc).encode()


batches = st.lists(st.one_of(events(), valid_events()), max_size=40)


def check_accounting(values: list[bytes | None], schema: Schema, decoded: DecodedBatch) -> None:
    n = len(values)
    good = decoded.index.tolist()
    rejected = [r.index for r in decoded.rejections]
    assert sorted(good + rejected) == list(range(n)), "each input good or rejected exactly once"
    assert len(decoded.ids) == len(good) == decoded.X.shape[0] == decoded.ts.shape[0]
    assert decoded.X.shape == (len(good), schema.n_features)
    assert decoded.X.dtype == np.float64 and np.isfinite(decoded.X).all()
    assert len(set(decoded.ids)) == len(decoded.ids)
    for doc_id in decoded.ids:
        assert type(doc_id) in (str, int)
        assert not isinstance(doc_id, str) or 0 < len(doc_id) <= 256
    for t in decoded.ts.tolist():
        assert isinstance(t, float)
    for r in decoded.rejections:
        assert r.stage in ("decode", "validate") and isinstance(r.reason, str) and r.reason


@FUZZ
@given(values=batches, max_bytes=st.sampled_from([64, 200, 1 << 20]))
def test_random_batches_are_fully_accounted_for(values: list[bytes | None], max_bytes: int) -> None:
    for schema in (PLAIN, NAMED):
        check_accounting(values, schema, decode_batch(values, schema, max_bytes))


@FUZZ
@given(values=st.lists(st.binary(max_size=300) | st.none(), max_size=30))
def test_random_bytes_never_raise(values: list[bytes | None]) -> None:
    check_accounting(values, PLAIN, decode_batch(values, PLAIN))


@FUZZ
@given(values=batches)
def test_an_event_is_judged_the_same_alone_or_in_a_batch(values: list[bytes | None]) -> None:
    """Fast path or slow path, batch companions change nothing but duplicate-id rejections."""
    decoded = decode_batch(values, PLAIN)
    outcome = {i: "good" for i in decoded.index.tolist()}
    outcome.update({r.index: r.stage for r in decoded.rejections})
    for i, value in enumerate(values):
        alone = decode_batch([value], PLAIN)
        expected = "good" if len(alone.ids) else alone.rejections[0].stage
        if expected == "good" and outcome[i] == "validate":
            reason = next(r.reason for r in decoded.rejections if r.index == i)
            assert reason.startswith("duplicate id"), reason
            continue
        assert outcome[i] == expected, (value, outcome[i], expected)
        if expected == "good":
            row = decoded.index.tolist().index(i)
            np.testing.assert_array_equal(decoded.X[row], alone.X[0])
            assert decoded.ids[row] == alone.ids[0]
            t0, t1 = decoded.ts[row], alone.ts[0]
            assert (math.isnan(t0) and math.isnan(t1)) or t0 == t1


@pytest.mark.slow
@FUZZ
@given(
    picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=30),
    extra=st.lists(valid_events(), max_size=10),
)
def test_poison_mixed_into_valid_batches(picks: list[int], extra: list[bytes]) -> None:
    """Any mix of the poison corpus and valid events: each poison case keeps its own verdict."""
    cases = [c for c in corpus(N_FEATURES) if len(c.value or b"") < 100_000]
    chosen = [cases[p % len(cases)] for p in picks]
    values = [c.value for c in chosen] + extra
    decoded = decode_batch(values, PLAIN)
    check_accounting(values, PLAIN, decoded)
    verdict = {r.index: r for r in decoded.rejections}
    for i, case in enumerate(chosen):
        assert verdict[i].stage == case.stage and case.reason in verdict[i].reason, case.name
