"""Decoding batches that mix Confluent-framed records with plain JSON events (pure logic: the
writer schemas come from an in-memory reader source; tests/integration/test_schema_registry.py
runs the real registry and its serializers)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.batch.decode import Schema, decode_batch
from worker.batch.framed import FieldMap, decode_mixed, is_framed
from worker.errors import RegistryUnavailableError
from worker.schemas.fields import avro_problem, json_schema_problem
from worker.schemas.readers import dict_row_getter

NAMES = ("mean radius", "mean texture", "worst area")
SCHEMA = Schema(3, NAMES)
FIELDS = FieldMap(("f.a", "f.b", "c"), "key", None)


class JsonReader:
    """A 'format' whose payload after the 5-byte frame is JSON, with nested field paths."""

    format = "Test"

    def __init__(self, problem: str | None = None) -> None:
        self._problem = problem

    def problem(self, fields: FieldMap) -> str | None:
        return self._problem

    def decode(self, value: bytes) -> Any:
        return orjson.loads(value[5:])

    def decode_table(
        self, values: Sequence[bytes], fields: FieldMap
    ) -> tuple[np.ndarray, list[Any], np.ndarray] | None:
        return None

    def decode_all(self, values: Sequence[bytes]) -> list[Any] | None:
        return None  # record by record, as a format without a group call

    def getter(self, path: str) -> Callable[[Any], Any]:
        getters = [itemgetter(p) for p in path.split(".")]

        def get(obj: Any) -> Any:
            for g in getters:
                obj = g(obj)
            return obj

        return get

    def row_getter(self, paths: Sequence[str]) -> Callable[[Any], Sequence[Any]]:
        return dict_row_getter(paths)


class FakeSource:
    def __init__(self, readers: Mapping[int, JsonReader | str]) -> None:
        self.known = readers
        self.asked: list[set[int]] = []

    def schema_ids(self, values: Sequence[bytes]) -> list[int | None]:
        return [int.from_bytes(v[1:5], "big") if len(v) >= 5 else None for v in values]

    def readers(self, ids: set[int]) -> Mapping[int, JsonReader | str]:
        self.asked.append(ids)
        return {i: self.known.get(i, f"unknown schema id {i}") for i in ids}


def framed(schema_id: int, doc: dict[str, Any]) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + orjson.dumps(doc)


def event(key: str, a: Any, b: Any = 2.0, c: Any = 3.0) -> dict[str, Any]:
    return {"key": key, "f": {"a": a, "b": b}, "c": c}


def plain(doc_id: str, row: list[float]) -> bytes:
    return orjson.dumps({"id": doc_id, "features": row})


def test_mixed_batch_keeps_batch_order_and_values() -> None:
    source = FakeSource({7: JsonReader(), 8: JsonReader()})
    values = [
        framed(7, event("a", 1.0)),
        plain("b", [4.0, 5.0, 6.0]),
        framed(8, event("c", 7, 8, 9)),
        framed(7, event("d", 10.0)),
    ]
    decoded = decode_mixed(values, SCHEMA, 1 << 20, source, FIELDS)
    assert decoded.rejections == []
    assert decoded.index.tolist() == [0, 1, 2, 3]
    assert decoded.ids == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(decoded.X, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 2, 3]])
    assert source.asked == [{7, 8}]  # one lookup for the batch, by schema id
    assert np.isnan(decoded.ts).all()


def test_ts_field_is_read() -> None:
    source = FakeSource({7: JsonReader()})
    doc = {**event("a", 1.0), "when": 1_700_000_000.5}
    decoded = decode_mixed(
        [framed(7, doc)], SCHEMA, 1 << 20, source, FieldMap(FIELDS.features, "key", "when")
    )
    assert decoded.ts.tolist() == [1_700_000_000.5]


def test_bad_framed_records_are_rejected_with_their_reason() -> None:
    source = FakeSource({7: JsonReader(), 9: JsonReader("no field 'f.a' in the writer schema")})
    values = [
        framed(7, event("ok", 1.0)),
        framed(9, event("missing", 1.0)),
        framed(5, event("unknown", 1.0)),
        b"\x00\x00\x01",
        framed(7, event("ok", 1.0))[:-4],
        framed(7, event("null", None)),
        framed(7, event("ok", 2.0)),  # the same id again
        framed(7, {**event("x", 1.0), "key": 3.5}),
    ]
    decoded = decode_mixed(values, SCHEMA, 1 << 20, source, FIELDS)
    assert decoded.ids == ["ok"]
    reasons = {r.index: (r.stage, r.reason) for r in decoded.rejections}
    assert reasons[1] == ("validate", "schema id 9 (Test): no field 'f.a' in the writer schema")
    assert reasons[2] == ("decode", "unknown schema id 5")
    assert reasons[3] == ("decode", "truncated record: no complete schema id")
    assert reasons[4][0] == "decode" and "schema id 7 (Test): cannot decode" in reasons[4][1]
    assert reasons[5] == ("validate", "field 'f.a' is null or not finite")
    assert reasons[6] == ("validate", "duplicate id 'ok' in the batch")
    assert "id field 'key' must be a string or an integer, got float" in reasons[7][1]
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7]


def test_oversized_framed_record_is_rejected() -> None:
    source = FakeSource({7: JsonReader()})
    value = framed(7, event("a" * 80, 1.0))
    decoded = decode_mixed([value], SCHEMA, 64, source, FIELDS)
    assert decoded.ids == []
    assert "over the limit of 64" in decoded.rejections[0].reason


def test_a_batch_without_framed_records_takes_the_json_path_unchanged() -> None:
    class Untouchable(FakeSource):
        def readers(self, ids: set[int]) -> Mapping[int, JsonReader | str]:
            raise AssertionError("no framed record, no lookup")

    values = [plain("a", [1.0, 2.0, 3.0]), b"not json"]
    decoded = decode_mixed(values, SCHEMA, 1 << 20, Untouchable({}), FIELDS)
    expected = decode_batch(values, SCHEMA)
    assert decoded.ids == expected.ids == ["a"]
    assert decoded.rejections == expected.rejections


def test_a_registry_that_does_not_answer_propagates_nothing_is_rejected() -> None:
    class Down(FakeSource):
        def readers(self, ids: set[int]) -> Mapping[int, JsonReader | str]:
            raise RegistryUnavailableError("the schema registry does not answer")

    with pytest.raises(RegistryUnavailableError):
        decode_mixed([framed(7, event("a", 1.0))], SCHEMA, 1 << 20, Down({}), FIELDS)


def test_magic_byte_without_a_registry_names_the_setting() -> None:
    decoded = decode_batch([framed(7, event("a", 1.0)), plain("b", [1, 2, 3])], SCHEMA)
    assert decoded.ids == ["b"]
    [rejection] = decoded.rejections
    assert rejection.stage == "decode"
    assert "Confluent-framed" in rejection.reason
    assert "schema_registry.url" in rejection.reason


def test_is_framed() -> None:
    assert is_framed(b"\x00\x00\x00\x00\x01")
    assert not is_framed(b'{"id": 1}')
    assert not is_framed(None)
    assert not is_framed(b"")


def test_field_map_renames_and_defaults_to_the_feature_name() -> None:
    fields = FieldMap.for_schema(SCHEMA, {"mean radius": "m.radius"}, "id", None)
    assert fields.features == ("m.radius", "mean texture", "worst area")


AVRO = json.dumps(
    {
        "type": "record",
        "name": "E",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "label", "type": "string"},
            {"name": "maybe", "type": ["null", "double"]},
            {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {
                "name": "f",
                "type": {
                    "type": "record",
                    "name": "F",
                    "fields": [{"name": "a", "type": "float"}, {"name": "n", "type": "long"}],
                },
            },
        ],
    }
)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("f.a", None),
        ("f.n", None),
        ("maybe", None),
        ("f.b", "no field 'f.b' in the writer schema"),
        ("g", "no field 'g' in the writer schema"),
        ("label", "field 'label' is string, not a number"),
        ("label.x", "field 'label' is not a record, so it has no 'x'"),
        ("f", "field 'f' is record, not a number"),
        ("when", "field 'when' is long (timestamp-millis), not a number"),
    ],
)
def test_avro_field_problems(path: str, problem: str | None) -> None:
    assert avro_problem(AVRO, path) == problem


JSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "f": {"type": "object", "properties": {"a": {"type": ["number", "null"]}}},
            "n": {"type": "integer"},
            "s": {"type": "string"},
        },
    }
)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("f.a", None),
        ("n", None),
        ("s", "property 's' is string, not a number"),
        ("f.b", "no property 'f.b' in the writer schema"),
        ("id", "property 'id' is string, not a number"),
    ],
)
def test_json_schema_field_problems(path: str, problem: str | None) -> None:
    assert json_schema_problem(JSON_SCHEMA, path) == problem
    assert json_schema_problem(JSON_SCHEMA, "id", numeric=False) is None


@pytest.mark.parametrize(
    "paths",
    [
        ("f.a", "f.b"),  # one nested record, in order: two C-level calls
        ("a", "b"),
        ("a",),
        ("f.a",),
        ("f.b", "f.a"),
        ("f.a", "c", "g.h.i"),
    ],
)
def test_dict_row_getter_reads_every_layout(paths: tuple[str, ...]) -> None:
    doc = {"a": 1, "b": 2, "c": 3, "f": {"a": 4, "b": 5}, "g": {"h": {"i": 6}}}

    def walk(path: str) -> Any:
        obj: Any = doc
        for part in path.split("."):
            obj = obj[part]
        return obj

    assert list(dict_row_getter(paths)(doc)) == [walk(p) for p in paths]


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["plain", "framed", "unknown", "truncated"]),
            st.integers(0, 30),  # ids: repeats happen
            st.lists(finite, min_size=3, max_size=3),
        ),
        max_size=40,
    )
)
@settings(max_examples=200, deadline=None)
def test_every_record_is_either_decoded_once_or_rejected_once(
    batch: list[tuple[str, int, list[float]]],
) -> None:
    source = FakeSource({7: JsonReader()})
    values: list[bytes] = []
    for kind, n, row in batch:
        doc_id = f"id-{n}"
        if kind == "plain":
            values.append(plain(doc_id, row))
        elif kind == "framed":
            values.append(framed(7, {"key": doc_id, "f": {"a": row[0], "b": row[1]}, "c": row[2]}))
        elif kind == "unknown":
            values.append(framed(5, event(doc_id, 1.0)))
        else:
            values.append(b"\x00\x00")
    decoded = decode_mixed(values, SCHEMA, 1 << 20, source, FIELDS)
    rejected = [r.index for r in decoded.rejections]
    assert sorted(decoded.index.tolist() + rejected) == list(range(len(values)))
    assert decoded.index.tolist() == sorted(decoded.index.tolist())
    assert len(set(decoded.ids)) == len(decoded.ids)
    for k, i in enumerate(decoded.index.tolist()):
        kind, n, row = batch[i]
        assert kind in ("plain", "framed")
        assert decoded.ids[k] == f"id-{n}"
        assert decoded.X[k].tolist() == row
        first = next(
            j for j, (kd, m, _) in enumerate(batch) if m == n and kd in ("plain", "framed")
        )
        assert first == i  # the first good record of an id wins
