"""Decoding and validating a batch of feature events: good rows, dead-letter stages, properties."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import worker.batch.decode
from worker.batch.decode import MAX_ID_CHARS, DecodedBatch, Rejection, Schema, decode_batch

N_FEATURES = 3
SCHEMA = Schema(N_FEATURES)
BAD_JSON = b'{"id": "x", "features": [1, 2'


def event(doc_id: Any, features: Any, **extra: Any) -> bytes:
    return orjson.dumps({"id": doc_id, "features": features, **extra})


def check_partition(batch: DecodedBatch, n: int) -> None:
    """Every input index is either good or rejected, exactly once; the arrays line up."""
    good = batch.index.tolist()
    rejected = [r.index for r in batch.rejections]
    assert sorted(good + rejected) == list(range(n))
    assert good == sorted(good)
    assert len(batch.ids) == len(good) == batch.X.shape[0] == batch.ts.shape[0]
    assert batch.X.dtype == np.float64 and batch.ts.dtype == np.float64


def expected_rows(docs: list[dict[str, Any]]) -> tuple[list[Any], np.ndarray, np.ndarray]:
    ids = [d["id"] for d in docs]
    X = np.array([[float(v) for v in d["features"]] for d in docs], dtype=np.float64)
    ts = np.array([math.nan if d.get("ts") is None else float(d["ts"]) for d in docs])
    return ids, X, ts


# -- good batches -----------------------------------------------------------------------------


def test_valid_batch_round_trips() -> None:
    docs = [
        {"id": "a", "features": [0.5, -1, 2e10], "ts": 1764390000.123},
        {"id": 42, "features": [0, 0.0, -0.0]},
        {"id": "c", "features": [1e-300, 3, 7], "ts": None},
        {"id": -7, "features": [1.5, 2.5, 3.5], "ts": 17},
    ]
    batch = decode_batch([orjson.dumps(d) for d in docs], SCHEMA)
    ids, X, ts = expected_rows(docs)
    assert batch.rejections == []
    assert batch.index.tolist() == [0, 1, 2, 3]
    assert batch.ids == ids
    assert [type(i) for i in batch.ids] == [str, int, str, int]
    np.testing.assert_array_equal(batch.X, X)
    np.testing.assert_array_equal(batch.ts, ts)


def test_empty_batch() -> None:
    batch = decode_batch([], SCHEMA)
    assert batch.ids == [] and batch.rejections == []
    assert batch.X.shape == (0, N_FEATURES)
    assert batch.index.shape == (0,) and batch.ts.shape == (0,)


def test_id_of_exactly_the_maximum_length_is_accepted() -> None:
    batch = decode_batch([event("x" * MAX_ID_CHARS, [1, 2, 3])], SCHEMA)
    assert batch.rejections == [] and batch.ids == ["x" * MAX_ID_CHARS]


def test_event_of_exactly_the_size_limit_is_accepted() -> None:
    value = event("a", [1, 2, 3])
    assert decode_batch([value], SCHEMA, max_event_bytes=len(value)).ids == ["a"]
    batch = decode_batch([value], SCHEMA, max_event_bytes=len(value) - 1)
    assert [(r.index, r.stage) for r in batch.rejections] == [(0, "validate")]


def test_same_id_as_int_and_str_are_different_events() -> None:
    batch = decode_batch([event(1, [1, 2, 3]), event("1", [4, 5, 6])], SCHEMA)
    assert batch.ids == [1, "1"] and batch.rejections == []


# -- bad events: the stage --------------------------------------------------------------------

BAD_EVENTS: list[tuple[str, bytes | None, str]] = [
    ("invalid JSON", BAD_JSON, "decode"),
    ("invalid UTF-8", b'{"id": "\xff\xfe", "features": [1, 2, 3]}', "decode"),
    ("null value", None, "decode"),
    ("empty value", b"", "decode"),
    ("blank value", b"  \n", "decode"),
    ("NaN literal", b'{"id": "n", "features": [NaN, 1, 2]}', "decode"),
    ("Infinity literal", b'{"id": "n", "features": [Infinity, 1, 2]}', "decode"),
    ("not an object (array)", b"[1, 2, 3]", "validate"),
    ("not an object (string)", b'"evt"', "validate"),
    ("not an object (null)", b"null", "validate"),
    ("missing id", b'{"features": [1, 2, 3]}', "validate"),
    ("null id", event(None, [1, 2, 3]), "validate"),
    ("bool id", event(True, [1, 2, 3]), "validate"),
    ("float id", event(1.5, [1, 2, 3]), "validate"),
    ("list id", event(["a"], [1, 2, 3]), "validate"),
    ("too-long id", event("x" * (MAX_ID_CHARS + 1), [1, 2, 3]), "validate"),
    ("missing features", b'{"id": "m"}', "validate"),
    ("null features", event("m", None), "validate"),
    ("string features", event("m", "1,2,3"), "validate"),
    ("too few features", event("m", [1, 2]), "validate"),
    ("too many features", event("m", [1, 2, 3, 4]), "validate"),
    ("empty features", event("m", []), "validate"),
    ("string feature", event("m", [1, "2", 3]), "validate"),
    ("null feature", event("m", [1, None, 3]), "validate"),
    ("nested list", event("m", [[1, 2, 3]]), "validate"),
    ("nested list inside", event("m", [1, [2], 3]), "validate"),
    ("object feature", event("m", [1, {"v": 2}, 3]), "validate"),
    ("features object without names", event("m", {"a": 1, "b": 2, "c": 3}), "validate"),
    ("string ts", event("m", [1, 2, 3], ts="2025-01-01"), "validate"),
    ("bool ts", event("m", [1, 2, 3], ts=True), "validate"),
    ("list ts", event("m", [1, 2, 3], ts=[1]), "validate"),
    ("object ts", event("m", [1, 2, 3], ts={"s": 1}), "validate"),
    ("oversized event", event("m", [1, 2, 3], pad="p" * 2000), "validate"),
]
MAX_BYTES = 1000  # above every other bad event here; "oversized event" is over it


@pytest.mark.parametrize(
    ("bad", "stage"), [(b, s) for _, b, s in BAD_EVENTS], ids=[n for n, _, _ in BAD_EVENTS]
)
def test_bad_event_among_good_ones_gets_its_stage(bad: bytes | None, stage: str) -> None:
    values = [event("g1", [1, 2, 3]), bad, event("g2", [4, 5, 6])]
    batch = decode_batch(values, SCHEMA, max_event_bytes=MAX_BYTES)
    check_partition(batch, 3)
    assert [(r.index, r.stage) for r in batch.rejections] == [(1, stage)]
    assert batch.rejections[0].reason
    assert batch.ids == ["g1", "g2"]
    np.testing.assert_array_equal(batch.X, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize(
    ("bad", "stage"), [(b, s) for _, b, s in BAD_EVENTS], ids=[n for n, _, _ in BAD_EVENTS]
)
def test_bad_event_alone_gets_its_stage(bad: bytes | None, stage: str) -> None:
    batch = decode_batch([bad], SCHEMA, max_event_bytes=MAX_BYTES)
    check_partition(batch, 1)
    assert [(r.index, r.stage) for r in batch.rejections] == [(0, stage)]
    assert batch.X.shape == (0, N_FEATURES)


def test_duplicate_ids_keep_the_first_and_reject_the_rest() -> None:
    values = [
        event("d", [1, 2, 3]),
        event("e", [0, 0, 0]),
        event("d", [4, 5, 6]),
        event("d", [7, 8, 9]),
    ]
    batch = decode_batch(values, SCHEMA)
    check_partition(batch, 4)
    assert batch.ids == ["d", "e"]
    np.testing.assert_array_equal(batch.X[0], [1, 2, 3])
    assert [(r.index, r.stage) for r in batch.rejections] == [(2, "validate"), (3, "validate")]
    assert all("duplicate" in r.reason for r in batch.rejections)


def test_rejection_reasons_say_what_is_wrong() -> None:
    values = [event("m", [1, 2]), event("m2", [1, "x", 3]), b'{"features": [1, 2, 3]}']
    reasons = [r.reason for r in decode_batch(values, SCHEMA).rejections]
    assert "expected 3 features, got 2" in reasons[0]
    assert "feature 1" in reasons[1] and "str" in reasons[1]
    assert "'id'" in reasons[2]


def test_empty_string_id_is_rejected_on_the_fast_path_too() -> None:
    batch = decode_batch([event("", [1, 2, 3])], SCHEMA)
    assert [(r.index, r.stage) for r in batch.rejections] == [(0, "validate")]


def test_event_of_only_bool_features_alone_is_rejected() -> None:
    batch = decode_batch([event("b", [True, False, True])], SCHEMA)
    assert [(r.index, r.stage) for r in batch.rejections] == [(0, "validate")]


@pytest.mark.parametrize(
    "values",
    [
        [event("b", [True, 2.5, 3])],
        [event("g", [1, 2, 3]), event("b", [True, False, True])],
    ],
    ids=["bool among numbers", "bool event among numeric events"],
)
def test_bool_feature_is_rejected_on_the_fast_path_too(values: list[bytes]) -> None:
    batch = decode_batch(values, SCHEMA)
    assert [(r.index, r.stage) for r in batch.rejections] == [(len(values) - 1, "validate")]


# -- feature names ----------------------------------------------------------------------------

NAMED = Schema(3, ("alpha", "beta", "gamma"))


def test_feature_objects_are_put_in_schema_order() -> None:
    values = [
        event("o1", {"gamma": 3, "alpha": 1.5, "beta": -2}),
        event("o2", [7, 8, 9]),  # a plain array is still accepted, in schema order
    ]
    batch = decode_batch(values, NAMED)
    assert batch.rejections == []
    np.testing.assert_array_equal(batch.X, [[1.5, -2, 3], [7, 8, 9]])


@pytest.mark.parametrize(
    "features",
    [
        {"alpha": 1, "beta": 2},
        {"alpha": 1, "beta": 2, "gamma": 3, "delta": 4},
        {"alpha": 1, "beta": "2", "gamma": 3},
        {"alpha": 1, "beta": 2, "gamma": None},
    ],
    ids=["missing name", "extra name", "string value", "null value"],
)
def test_bad_feature_objects_are_validate_rejections(features: dict[str, Any]) -> None:
    batch = decode_batch([event("ok", [1, 2, 3]), event("bad", features)], NAMED)
    assert batch.ids == ["ok"]
    assert [(r.index, r.stage) for r in batch.rejections] == [(1, "validate")]


def test_a_misspelt_name_is_named_with_the_one_meant() -> None:
    features = {"alpah": 1, "beta": 2, "gamma": 3}
    [rejection] = decode_batch([event("bad", features)], NAMED).rejections
    assert rejection.reason == (
        "'features' names 'alpah', which the models do not know (did you mean 'alpha'?)"
    )


def test_an_extra_name_is_named() -> None:
    features = {"alpha": 1, "beta": 2, "gamma": 3, "delta": 4}
    [rejection] = decode_batch([event("bad", features)], NAMED).rejections
    assert rejection.reason == "'features' names 'delta', which the models do not know"


def test_unknown_and_missing_names_are_listed() -> None:
    features = {"alpha": 1, "x1": 2, "x2": 3, "betta": 4}
    [rejection] = decode_batch([event("bad", features)], NAMED).rejections
    assert rejection.reason == (
        "'features' names 3 the models do not know: 'x1', 'x2', 'betta' (did you mean 'beta'?); "
        "it lacks 'gamma'"
    )
    [rejection] = decode_batch([event("bad", {"beta": 2})], NAMED).rejections
    assert rejection.reason == "'features' lacks 'alpha', 'gamma' (2 of the 3 the models take)"


def test_many_unknown_names_make_a_bounded_reason() -> None:
    features = {f"name_{i:05d}" + "x" * 60: i for i in range(10_000)}
    [rejection] = decode_batch([event("bad", features)], NAMED).rejections
    assert rejection.reason.startswith("'features' names 10000 the models do not know: ")
    assert "and 9992 more" in rejection.reason and len(rejection.reason) < 1000


def test_a_bad_value_is_named_as_the_event_named_it() -> None:
    values = [
        event("object", {"alpha": 1, "beta": "2", "gamma": 3}),
        event("array", [1, 2, None]),
        event("unnamed", [1, True, 3]),
    ]
    reasons = [r.reason for r in decode_batch(values[:2], NAMED).rejections]
    assert reasons == [
        "feature 'beta' must be a number, got str",
        "feature 2 ('gamma') must be a number, got null",
    ]
    [rejection] = decode_batch(values[2:], SCHEMA).rejections
    assert rejection.reason == "feature 1 must be a number, got bool"


@pytest.mark.parametrize(
    "features",
    [{"alpha": 1, "beta": True, "gamma": 3}, {"alpha": 1, "beta": 2}, [1, 2, 3]],
    ids=["bool value", "missing name", "array among objects"],
)
def test_a_bad_object_among_good_ones_is_still_found(features: Any) -> None:
    good = [event(f"g{i}", {"gamma": i, "alpha": 1, "beta": 2}) for i in range(3)]
    batch = decode_batch([*good, event("odd", features)], NAMED)
    if isinstance(features, list):  # an array is fine: it is in the models' order
        assert batch.rejections == [] and batch.X[3].tolist() == [1, 2, 3]
    else:
        assert [r.index for r in batch.rejections] == [3]
        assert batch.ids == ["g0", "g1", "g2"]


# -- properties -------------------------------------------------------------------------------

ids = st.one_of(st.text(min_size=1, max_size=MAX_ID_CHARS), st.integers(-(2**63), 2**63 - 1))
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53))
timestamps = st.one_of(
    st.floats(min_value=0, max_value=4e9, allow_nan=False), st.integers(0, 2**40)
)


@st.composite
def valid_batches(draw: st.DrawFn) -> tuple[Schema, list[dict[str, Any]]]:
    n_features = draw(st.integers(1, 5))
    docs = []
    for doc_id in draw(st.lists(ids, min_size=1, max_size=12, unique=True)):
        doc: dict[str, Any] = {
            "id": doc_id,
            "features": draw(st.lists(numbers, min_size=n_features, max_size=n_features)),
        }
        ts_kind = draw(st.sampled_from(["absent", "null", "value"]))
        if ts_kind != "absent":
            doc["ts"] = None if ts_kind == "null" else draw(timestamps)
        docs.append(doc)
    return Schema(n_features), docs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_batches())
def test_valid_batches_round_trip_exactly(batch_spec: tuple[Schema, list[dict[str, Any]]]) -> None:
    schema, docs = batch_spec
    values = [orjson.dumps(d) for d in docs]
    batch = decode_batch(values, schema)
    ids_, X, ts = expected_rows(docs)
    assert batch.rejections == []
    assert batch.index.tolist() == list(range(len(docs)))
    assert batch.ids == ids_ and [type(i) for i in batch.ids] == [type(i) for i in ids_]
    np.testing.assert_array_equal(batch.X, X)
    np.testing.assert_array_equal(batch.ts, ts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_batches(), st.sampled_from([BAD_JSON, None, b"[]", b'{"id": "z"}']))
# Ids spelling a JSON boolean pass the batch's byte search for booleans: the type check after it
# keeps them on the fast path.
@example(batch_spec=(Schema(1), [{"id": "false", "features": [0.0]}]), bad=BAD_JSON)
@example(batch_spec=(Schema(2), [{"id": "a true b", "features": [1, 2.5]}]), bad=None)
def test_fast_and_slow_paths_agree_on_valid_events(
    batch_spec: tuple[Schema, list[dict[str, Any]]], bad: bytes | None
) -> None:
    schema, docs = batch_spec
    values = [orjson.dumps(d) for d in docs]

    def no_slow_path(*args: Any) -> DecodedBatch:
        raise AssertionError("a batch of valid events took the slow path")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(worker.batch.decode, "_slow_path", no_slow_path)
        fast = decode_batch(values, schema)
    slow = decode_batch([*values, bad], schema)  # one bad event: every event goes the slow way
    assert [r.index for r in slow.rejections] == [len(values)]
    np.testing.assert_array_equal(slow.index, fast.index)
    assert slow.ids == fast.ids
    assert [type(i) for i in slow.ids] == [type(i) for i in fast.ids]
    np.testing.assert_array_equal(slow.X, fast.X)
    np.testing.assert_array_equal(slow.ts, fast.ts)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
near_valid_docs = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(ids, json_values, st.just("")),
        "features": st.one_of(st.lists(numbers | json_values, min_size=3, max_size=3), json_values),
        "ts": st.one_of(timestamps, json_values),
        "extra": json_values,
    },
).map(orjson.dumps)
raw_values = st.one_of(
    st.none(),
    st.binary(max_size=80),
    near_valid_docs,
    json_values.map(orjson.dumps),
    near_valid_docs.flatmap(
        lambda v: st.integers(0, max(len(v) - 1, 0)).map(lambda i: v[:i] + b"\xff" + v[i + 1 :])
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(raw_values, max_size=10), st.sampled_from([Schema(3), NAMED]))
def test_arbitrary_input_never_raises_and_every_index_is_accounted_for(
    values: list[bytes | None], schema: Schema
) -> None:
    batch = decode_batch(values, schema, max_event_bytes=120)
    check_partition(batch, len(values))
    assert batch.X.shape == (len(batch.ids), schema.n_features)
    assert np.isfinite(batch.X).all()
    assert len(set(batch.ids)) == len(batch.ids)
    assert all(type(i) in (str, int) for i in batch.ids)
    assert all(
        isinstance(r, Rejection) and r.stage in {"decode", "validate"} for r in batch.rejections
    )
    assert len({r.index for r in batch.rejections}) == len(batch.rejections)


named_docs = st.lists(ids, min_size=1, max_size=12, unique=True).flatmap(
    lambda doc_ids: st.tuples(
        *(
            st.tuples(
                st.just(doc_id),
                st.permutations(NAMED.feature_names or ()),
                st.lists(numbers, min_size=3, max_size=3),
            )
            for doc_id in doc_ids
        )
    )
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(named_docs)
def test_valid_feature_objects_take_the_fast_path(
    docs: tuple[tuple[Any, list[str], list[Any]], ...],
) -> None:
    """Objects in any key order decode without the per-event path, as that path would."""
    values = [event(i, dict(zip(keys, row, strict=True))) for i, keys, row in docs]

    def no_slow_path(*args: Any) -> DecodedBatch:
        raise AssertionError("a batch of valid events took the slow path")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(worker.batch.decode, "_slow_path", no_slow_path)
        fast = decode_batch(values, NAMED)
    slow = decode_batch([*values, BAD_JSON], NAMED)
    assert [r.index for r in slow.rejections] == [len(values)]
    assert slow.ids == fast.ids
    np.testing.assert_array_equal(slow.X, fast.X)
    expected = [
        [float(dict(zip(k, r, strict=True))[n]) for n in ["alpha", "beta", "gamma"]]
        for _, k, r in docs
    ]
    np.testing.assert_array_equal(fast.X, np.array(expected, dtype=np.float64))
