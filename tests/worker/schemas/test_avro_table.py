"""The numpy reader of flat Avro records agrees with fastavro on every record it reads, and
gives up (None) on every record it cannot read cleanly, so the group falls back to fastavro."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.schemas.avro_table import AvroTable

LONG = st.integers(-(2**63), 2**63 - 1)
INT = st.integers(-(2**31), 2**31 - 1)
DOUBLE = st.floats(allow_nan=False)
FLOAT32 = st.floats(width=32, allow_nan=False)
TEXT = st.text(max_size=40)

SCHEMA = {
    "type": "record",
    "name": "E",
    "fields": [
        {"name": "note", "type": "string"},  # not read: skipped by its length
        {"name": "id", "type": "string"},
        {"name": "n", "type": "long"},
        {
            "name": "f",
            "type": {
                "type": "record",
                "name": "F",
                "fields": [{"name": "a", "type": "double"}, {"name": "b", "type": "float"}],
            },
        },
        {"name": "c", "type": "int"},
        {"name": "ts", "type": {"type": "double"}},
    ],
}
FEATURES = ("f.b", "n", "f.a", "c")


def framed(doc: dict[str, Any], schema: dict[str, Any] = SCHEMA) -> bytes:
    out = io.BytesIO()
    out.write(b"\x00\x00\x00\x00\x01")
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), doc)
    return out.getvalue()


def fastavro_columns(values: list[bytes]) -> tuple[list[list[float]], list[Any], list[float]]:
    parsed = fastavro.parse_schema(SCHEMA)
    docs = [fastavro.schemaless_reader(io.BytesIO(v[5:]), parsed, None) for v in values]
    X = [[float(d["f"]["b"]), float(d["n"]), float(d["f"]["a"]), float(d["c"])] for d in docs]
    return X, [d["id"] for d in docs], [float(d["ts"]) for d in docs]


RECORDS = st.fixed_dictionaries(
    {
        "note": TEXT,
        "id": TEXT,
        "n": LONG,
        "f": st.fixed_dictionaries({"a": DOUBLE, "b": FLOAT32}),
        "c": INT,
        "ts": DOUBLE,
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(RECORDS, min_size=1, max_size=20), st.lists(st.binary(max_size=3), max_size=20))
def test_reads_what_fastavro_reads(docs: list[dict[str, Any]], tails: list[bytes]) -> None:
    # Bytes after a record are ignored, by fastavro and here alike.
    values = [framed(d) + (tails[k] if k < len(tails) else b"") for k, d in enumerate(docs)]
    table = AvroTable.plan(SCHEMA, FEATURES, "id", "ts")
    assert table is not None
    got = table.read(values)
    assert got is not None
    X, ids, ts = got
    want_X, want_ids, want_ts = fastavro_columns(values)
    assert X.tolist() == want_X and ids == want_ids and ts.tolist() == want_ts


def test_a_record_cut_short_or_bad_utf8_is_not_read() -> None:
    table = AvroTable.plan(SCHEMA, FEATURES, "id", None)
    assert table is not None
    doc = {"note": "", "id": "é", "n": 300, "f": {"a": 1.0, "b": 2.0}, "c": -1, "ts": 0.0}
    good = framed(doc)
    assert table.read([good, good]) is not None
    for cut in range(5, len(good)):
        assert table.read([good, good[:cut]]) is None, cut
    bad_utf8 = good.replace("é".encode(), b"\xff\xfe")
    assert table.read([good, bad_utf8]) is None


@pytest.mark.parametrize(
    "kind",
    [
        {"type": "array", "items": "double"},
        {"type": "map", "values": "double"},
        ["null", "double", "string"],
        ["double", "string"],
        ["null", {"type": "record", "name": "N", "fields": [{"name": "z", "type": "double"}]}],
        "G",  # the record itself
        "Unknown",
    ],
)
def test_other_field_types_are_left_to_fastavro(kind: Any) -> None:
    schema: dict[str, Any] = {"type": "record", "name": "G", "fields": []}
    schema["fields"] += [{"name": "id", "type": "string"}, {"name": "y", "type": "double"}]
    assert AvroTable.plan(schema, ("y",), "id", None) is not None
    schema["fields"].append({"name": "x", "type": kind})
    assert AvroTable.plan(schema, ("y",), "id", None) is None


RICH = {
    "type": "record",
    "name": "Event",
    "namespace": "shop",
    "fields": [
        {"name": "ok", "type": "boolean"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "raw", "type": "bytes"},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {
            "name": "at",
            "type": {
                "type": "record",
                "name": "Point",
                "fields": [{"name": "x", "type": "double"}, {"name": "y", "type": "float"}],
            },
        },
        {"name": "to", "type": "Point"},  # the named type again, by its short name
        {"name": "back", "type": "shop.Kind"},  # and by its full name
        {"name": "note", "type": ["null", "string"]},
        {"name": "tag", "type": ["null", "Kind"]},
        {"name": "mark", "type": ["Digest", "null"]},
        {"name": "n", "type": ["null", "long"]},
    ],
}
RICH_FEATURES = ("at.x", "to.y", "n", "to.x")
UUIDS = st.uuids().map(str)
RICH_RECORDS = st.fixed_dictionaries(
    {
        "ok": st.booleans(),
        "kind": st.sampled_from("ABC"),
        "raw": st.binary(max_size=30),
        "digest": st.binary(min_size=4, max_size=4),
        "id": UUIDS,
        "ts": st.integers(0, 2**42),
        "day": st.integers(-(10**5), 10**5),
        "price": st.decimals(-(10**6), 10**6, places=2),
        "at": st.fixed_dictionaries({"x": DOUBLE, "y": FLOAT32}),
        "to": st.fixed_dictionaries({"x": DOUBLE, "y": FLOAT32}),
        "back": st.sampled_from("ABC"),
        "note": st.none() | TEXT,
        "tag": st.none() | st.sampled_from("ABC"),
        "mark": st.none() | st.binary(min_size=4, max_size=4),
        "n": st.none() | LONG,
    }
)


def fastavro_rows(schema: dict[str, Any], values: list[bytes]) -> list[dict[str, Any]]:
    parsed = fastavro.parse_schema(schema)
    return [fastavro.schemaless_reader(io.BytesIO(v[5:]), parsed, None) for v in values]


@settings(max_examples=60, deadline=None)
@given(st.lists(RICH_RECORDS, min_size=1, max_size=20))
def test_every_other_leaf_type_and_named_types_read_as_fastavro_reads_them(
    docs: list[dict[str, Any]],
) -> None:
    values = [framed(d, RICH) for d in docs]
    table = AvroTable.plan(RICH, RICH_FEATURES, "id", "ts")
    assert table is not None
    got = table.read(values)
    assert got is not None
    read = fastavro_rows(RICH, values)
    want_X = [[d["at"]["x"], d["to"]["y"], d["n"], d["to"]["x"]] for d in read]
    np.testing.assert_array_equal(got[0], np.array(want_X, dtype=np.float64))
    assert got[1] == [str(d["id"]) for d in read]
    # timestamp-millis: fastavro gives an aware datetime; the table its epoch seconds.
    assert got[2].tolist() == [d["ts"].timestamp() for d in read]


def test_the_event_time_in_microseconds_and_a_time_of_another_kind() -> None:
    schema: dict[str, Any] = {"type": "record", "name": "M", "fields": []}
    schema["fields"] += [{"name": "id", "type": "long"}, {"name": "x", "type": "double"}]
    schema["fields"].append(
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}}
    )
    values = [
        framed({"id": k, "x": 1.0, "ts": 1_700_000_000_123_456 + k}, schema) for k in range(3)
    ]
    table = AvroTable.plan(schema, ("x",), "id", "ts")
    assert table is not None
    got = table.read(values)
    assert got is not None
    assert got[2].tolist() == [d["ts"].timestamp() for d in fastavro_rows(schema, values)]
    schema["fields"][2]["type"]["logicalType"] = "local-timestamp-micros"  # no time zone
    assert AvroTable.plan(schema, ("x",), "id", "ts") is None
    assert AvroTable.plan(RICH, RICH_FEATURES, "id", "day") is None  # a date is not a time
    assert AvroTable.plan(RICH, ("day",), "id", None) is None  # nor a number


def test_a_record_fastavro_refuses_is_not_read_here() -> None:
    doc = {
        "ok": True, "kind": "C", "raw": b"\xff", "digest": b"abcd", "id": "i", "ts": 5, "day": 1,
        "price": Decimal(0), "at": {"x": 1.0, "y": 2.0}, "to": {"x": 3.0, "y": 4.0}, "back": "A",
        "note": "é", "tag": "B", "mark": None, "n": 7,
    }  # fmt: skip
    table = AvroTable.plan(RICH, RICH_FEATURES, "id", "ts")
    assert table is not None
    good = framed(doc, RICH)
    assert table.read([good, good]) is not None
    for cut in range(5, len(good)):
        assert table.read([good, good[:cut]]) is None, cut
    kind_at = 5 + 1  # after the frame and the boolean: the enum's index, 2 zigzagged
    assert good[kind_at] == 4
    out_of_range = good[:kind_at] + b"\x06" + good[kind_at + 1 :]
    bad_utf8 = good.replace("é".encode(), b"\xff\xfe")  # in a string no feature reads
    for bad in (out_of_range, bad_utf8):
        with pytest.raises(Exception):  # noqa: B017 (fastavro's own errors, of several kinds)
            fastavro_rows(RICH, [bad])
        assert table.read([good, bad]) is None


def test_features_and_ids_of_other_types_are_left_to_fastavro() -> None:
    assert AvroTable.plan(SCHEMA, ("id",), "id", None) is None  # a string feature
    assert AvroTable.plan(SCHEMA, ("n",), "f.a", None) is None  # a double id
    assert AvroTable.plan(SCHEMA, ("n",), "id", "note") is None  # a string time
    assert AvroTable.plan(SCHEMA, ("zz",), "id", None) is None  # no such field


def test_long_ids_and_no_time() -> None:
    schema = {
        "type": "record",
        "name": "L",
        "fields": [{"name": "key", "type": "long"}, {"name": "x", "type": "double"}],
    }
    values = [framed({"key": k, "x": k / 3}, schema) for k in (0, -1, 2**40, -(2**63))]
    table = AvroTable.plan(schema, ("x",), "key", None)
    assert table is not None
    got = table.read(values)
    assert got is not None
    X, ids, ts = got
    assert ids == [0, -1, 2**40, -(2**63)] and all(type(i) is int for i in ids)
    assert X[:, 0].tolist() == [k / 3 for k in ids] and np.isnan(ts).all()


NULLABLE = {
    "type": "record",
    "name": "U",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "a", "type": ["null", "double"]},
        {"name": "b", "type": ["long", "null"]},
        {"name": "c", "type": ["null", "float"]},
        {"name": "ts", "type": ["null", "double"]},
    ],
}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "id": LONG,
                "a": st.none() | DOUBLE,
                "b": st.none() | LONG,
                "c": st.none() | FLOAT32,
                "ts": st.none() | DOUBLE,
            }
        ),
        min_size=1,
        max_size=20,
    )
)
def test_nullable_numbers_read_as_fastavro_reads_them(docs: list[dict[str, Any]]) -> None:
    values = [framed(d, NULLABLE) for d in docs]
    table = AvroTable.plan(NULLABLE, ("a", "b", "c"), "id", "ts")
    assert table is not None
    got = table.read(values)
    assert got is not None
    parsed = fastavro.parse_schema(NULLABLE)
    read = [fastavro.schemaless_reader(io.BytesIO(v[5:]), parsed, None) for v in values]
    # fastavro's None becomes NaN in the float array the worker builds from its rows.
    want_X = np.array([[d["a"], d["b"], d["c"]] for d in read], dtype=np.float64)
    want_ts = np.array([d["ts"] for d in read], dtype=np.float64)
    np.testing.assert_array_equal(got[0], want_X)
    assert got[1] == [d["id"] for d in read]
    np.testing.assert_array_equal(got[2], want_ts)


def test_a_bad_union_branch_or_a_nullable_id_is_left_to_fastavro() -> None:
    table = AvroTable.plan(NULLABLE, ("a",), "id", None)
    assert table is not None
    good = framed({"id": 1, "a": 2.0, "b": None, "c": None, "ts": None}, NULLABLE)
    assert table.read([good]) is not None
    assert good[6] == 2  # the branch of "a": double
    assert table.read([good[:6] + b"\x04" + good[7:]]) is None  # branch 2 of two
    with_null_id = {**NULLABLE, "fields": [{"name": "id", "type": ["null", "long"]}]}
    assert AvroTable.plan(with_null_id, (), "id", None) is None
