"""The readers over a Schema Registry: a registry that does not answer is waited for (never a
dead letter), an unknown id is one, and /readyz says why a batch waits. The client is faked:
this is the retry logic only (tests/integration/test_schema_registry.py freezes a real one)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import RegisteredSchema, Schema, SchemaReference
from confluent_kafka.schema_registry.error import SchemaRegistryError

from worker.batch.decode import Schema as DecoderSchema
from worker.batch.framed import FieldMap, decode_mixed
from worker.errors import ConfigError, RegistryUnavailableError
from worker.schemas import RegistryReaders, check_input_subject
from worker.schemas.readers import MIN_TABLE, SchemaReader
from worker.service.health import Health

AVRO = json.dumps(
    {
        "type": "record",
        "name": "E",
        "fields": [{"name": "id", "type": "string"}, {"name": "x", "type": "double"}],
    }
)


class FlakyClient:
    """Answers ``get_schema`` after ``failures`` connection errors; knows only id 1."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def get_schema(self, schema_id: int) -> Schema:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection refused")
        if schema_id != 1:
            raise SchemaRegistryError(404, 40403, f"Schema {schema_id} not found")
        return Schema(AVRO, "AVRO")

    def get_latest_version(self, subject: str) -> RegisteredSchema:
        if subject != "known-value":
            raise SchemaRegistryError(404, 40401, f"Subject {subject} not found")
        return RegisteredSchema(
            subject=subject, version=3, schema_id=1, guid=None, schema=Schema(AVRO, "AVRO")
        )


def test_waits_while_the_registry_does_not_answer_and_readyz_says_why() -> None:
    health = Health(60.0)
    health.set_phase("running")
    health.assigned(1)
    seen: list[str | None] = []

    def reachable(why: str | None) -> None:
        seen.append(why)
        health.registry_reached(why)
        if why is not None:
            verdict = health.readiness()
            assert not verdict.ok
            assert "the schema registry does not answer" in verdict.body["reason"]

    waits: list[int] = []
    readers = RegistryReaders(FlakyClient(3), lambda: waits.append(1) is None, reachable)
    got = readers.readers({1})
    assert isinstance(got[1], SchemaReader) and got[1].format == "Avro"
    assert len(waits) == 3
    assert seen[-1] is None and all(w is not None for w in seen[:-1])
    assert health.readiness().ok
    assert readers.readers({1}) == got  # cached: no more calls
    assert readers.client.calls == 4


def test_an_unknown_id_is_a_reason_not_a_wait() -> None:
    readers = RegistryReaders(FlakyClient(0), lambda: pytest.fail("must not wait"))
    reason = readers.readers({7})[7]
    assert isinstance(reason, str) and reason.startswith("unknown schema id 7")


def test_asked_to_stop_while_waiting_raises() -> None:
    readers = RegistryReaders(FlakyClient(100), lambda: False)
    with pytest.raises(RegistryUnavailableError, match="does not answer"):
        readers.readers({1})


def test_the_start_up_check_names_the_field_and_the_subject() -> None:
    client = FlakyClient(0)
    assert check_input_subject(client, "known", FieldMap(("x",))) == "known-value version 3 (Avro)"
    assert check_input_subject(client, "new", FieldMap(("y",))) is None  # no subject yet
    with pytest.raises(ConfigError) as caught:
        check_input_subject(client, "known", FieldMap(("x", "y")))
    assert caught.value.key == "input.fields"
    assert "subject 'known-value'" in str(caught.value)
    assert "no field 'y' in the writer schema" in str(caught.value)
    with pytest.raises(ConfigError, match="field 'id' is string, not a number"):
        check_input_subject(client, "known", FieldMap(("id",)))


def test_a_registry_down_at_start_up_does_not_stop_it(caplog: Any) -> None:
    class Down(FlakyClient):
        def get_latest_version(self, subject: str) -> RegisteredSchema:
            raise ConnectionError("connection refused")

    assert check_input_subject(Down(0), "known", FieldMap(("x",))) is None
    assert "not checked" in caplog.text


GROUP_AVRO = {
    "type": "record",
    "name": "G",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "x", "type": ["null", "double"]},
        {
            "name": "n",
            "type": {"type": "record", "name": "N", "fields": [{"name": "y", "type": "float"}]},
        },
        {"name": "k", "type": {"type": "enum", "name": "K", "symbols": ["A", "B"]}},
    ],
}


class OneSchemaClient:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.registered = Schema(json.dumps(schema), "AVRO")

    def get_schema(
        self, schema_id: int, subject_name: str | None = None, fmt: Any = None
    ) -> Schema:
        return self.registered


def avro_record(schema: dict[str, Any], doc: dict[str, Any]) -> bytes:
    out = io.BytesIO(b"\x00" + (1).to_bytes(4, "big"))
    out.seek(5)
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), doc)
    return out.getvalue()


def test_a_group_decodes_as_the_deserializer_does_record_by_record() -> None:
    reader = SchemaReader(1, OneSchemaClient(GROUP_AVRO).registered, OneSchemaClient(GROUP_AVRO))
    docs = [
        {"id": f"e{i}", "x": None if i % 3 == 0 else i / 7, "n": {"y": 0.5 * i}, "k": "AB"[i % 2]}
        for i in range(9)
    ]
    values = [avro_record(GROUP_AVRO, d) for d in docs]
    assert reader.decode_all(values) == [reader.decode(v) for v in values]


def test_one_corrupt_record_in_a_group_is_rejected_with_its_own_reason() -> None:
    client = OneSchemaClient(GROUP_AVRO)
    readers = RegistryReaders(client, lambda: pytest.fail("must not wait"))
    docs = [{"id": f"e{i}", "x": float(i), "n": {"y": 1.0}, "k": "A"} for i in range(5)]
    values = [avro_record(GROUP_AVRO, d) for d in docs]
    values[2] = values[2][:9]  # cut inside the record: its decoder cannot read it
    reader = readers.readers({1})[1]
    assert isinstance(reader, SchemaReader)
    assert reader.decode_all(values) is None  # the group call gives up: record by record
    with pytest.raises(Exception) as caught:
        reader.decode(values[2])
    fields = FieldMap(("x", "n.y"), "id", None)
    got = decode_mixed(values, DecoderSchema(2), 1 << 20, readers, fields)
    assert got.index.tolist() == [0, 1, 3, 4]
    assert got.ids == ["e0", "e1", "e3", "e4"]
    assert got.X.tolist() == [[0.0, 1.0], [1.0, 1.0], [3.0, 1.0], [4.0, 1.0]]
    [rejection] = got.rejections
    assert (rejection.index, rejection.stage) == (2, "decode")
    said = str(caught.value).partition(" from <")[0]  # then the buffer, named 'the payload'
    assert rejection.reason == f"schema id 1 (Avro): cannot decode: {said} from the payload"


def test_the_numpy_reader_and_fastavro_give_the_same_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = {
        "type": "record",
        "name": "T",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "x", "type": ["null", "double"]},
            {"name": "y", "type": "long"},
        ],
    }
    docs = [{"id": "a", "x": 1.5, "y": 2}, {"id": "b", "x": None, "y": 3}]
    docs += [{"id": "", "x": 0.5, "y": 4}, {"id": "a", "x": 2.5, "y": 5}]  # empty, duplicate
    docs += [{"id": "c", "x": float("inf"), "y": 6}, {"id": "d", "x": -1.0, "y": -(2**40)}]
    docs += [{"id": f"e{k}", "x": 0.25, "y": k} for k in range(MIN_TABLE - len(docs))]
    values = [avro_record(schema, d) for d in docs]
    fields = FieldMap(("x", "y"), "id", None)

    def batch() -> Any:
        readers = RegistryReaders(OneSchemaClient(schema), lambda: False)
        return decode_mixed(values, DecoderSchema(2), 1 << 20, readers, fields)

    client = OneSchemaClient(schema)
    reader = SchemaReader(1, client.registered, client)
    assert reader.decode_table(values, fields) is not None
    assert reader.decode_table(values[1:], fields) is None  # too few: fastavro's fixed cost
    by_numpy = batch()
    monkeypatch.setattr(SchemaReader, "decode_table", lambda self, values, fields: None)
    by_fastavro = batch()
    assert by_numpy.ids == by_fastavro.ids == ["a", "d", "e0", "e1"]
    assert by_numpy.index.tolist() == by_fastavro.index.tolist() == [0, 5, 6, 7]
    rows = [[1.5, 2.0], [-1.0, -(2.0**40)], [0.25, 0.0], [0.25, 1.0]]
    assert by_numpy.X.tolist() == by_fastavro.X.tolist() == rows
    assert by_numpy.rejections == by_fastavro.rejections
    assert [r.index for r in by_numpy.rejections] == [1, 2, 3, 4]
    assert "field 'x' is null or not finite" in by_numpy.rejections[0].reason


def by_every_path(monkeypatch: pytest.MonkeyPatch, batch: Callable[[], Any]) -> list[Any]:
    """``batch()`` decoded by numpy (where the group allows), by fastavro, and by the
    deserializer record by record."""
    got = [batch()]
    monkeypatch.setattr(SchemaReader, "decode_table", lambda self, values, fields: None)
    got.append(batch())
    monkeypatch.setattr(SchemaReader, "decode_all", lambda self, values: None)
    got.append(batch())
    return got


TIMED = {
    "type": "record",
    "name": "Timed",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "ok", "type": "boolean"},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "p",
            "type": {"type": "record", "name": "P", "fields": [{"name": "x", "type": "double"}]},
        },
        {"name": "q", "type": "P"},
    ],
}


@pytest.mark.parametrize("n", [MIN_TABLE, 3])
def test_a_uuid_id_and_a_millisecond_time_read_alike_by_every_path(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    """numpy (``n`` = MIN_TABLE), fastavro (fewer), and the deserializer record by record give
    the id as its text and the time in epoch seconds: the group is not dead-lettered for its
    logical types, and a reused named type is found by name."""
    docs = [
        {"id": f"00000000-0000-4000-8000-{k:012d}", "ok": k % 2 == 0, "kind": "AB"[k % 2],
         "at": 1_700_000_000_000 + 7 * k, "p": {"x": k / 2}, "q": {"x": -k}}
        for k in range(n)
    ]  # fmt: skip
    values = [avro_record(TIMED, d) for d in docs]
    fields = FieldMap(("p.x", "q.x"), "id", "at")
    client = OneSchemaClient(TIMED)
    reader = SchemaReader(1, client.registered, client)
    assert reader.problem(fields) is None
    assert (reader.decode_table(values, fields) is not None) is (n >= MIN_TABLE)

    def batch() -> Any:
        readers = RegistryReaders(OneSchemaClient(TIMED), lambda: False)
        return decode_mixed(values, DecoderSchema(2), 1 << 20, readers, fields)

    for decoded in by_every_path(monkeypatch, batch):
        assert not decoded.rejections
        assert decoded.ids == [d["id"] for d in docs]
        assert decoded.ts.tolist() == [d["at"] / 1000 for d in docs]
        assert decoded.X.tolist() == [[d["p"]["x"], d["q"]["x"]] for d in docs]


def test_a_time_of_another_logical_type_is_named() -> None:
    schema = json.loads(json.dumps(TIMED))
    schema["fields"][3]["type"]["logicalType"] = "local-timestamp-millis"
    client = OneSchemaClient(schema)
    reader = SchemaReader(1, client.registered, client)
    problem = reader.problem(FieldMap(("p.x",), "id", "at"))
    assert problem == "field 'at' is long (local-timestamp-millis), not a number"
    assert reader.problem(FieldMap(("at",), "id", None)) == (
        "field 'at' is long (local-timestamp-millis), not a number"
    )


ADDRESS = {
    "type": "record",
    "name": "Address",
    "namespace": "acme",
    "fields": [
        {"name": "lat", "type": "double"},
        {"name": "zone", "type": {"type": "enum", "name": "Zone", "symbols": ["N", "S"]}},
    ],
}
ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "acme",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "home", "type": "acme.Address"},  # defined in another subject
        {"name": "work", "type": "Address"},
    ],
}


class ReferencingClient:
    """Knows schema id 1, ``ORDER``, which references ``ADDRESS`` (subject address-value v1);
    the reference's lookup fails ``down`` times first, or is unknown when ``missing``."""

    def __init__(self, down: int = 0, missing: bool = False) -> None:
        self.down = down
        self.missing = missing
        reference = SchemaReference("acme.Address", "address-value", 1)
        self.registered = Schema(json.dumps(ORDER), "AVRO", [reference])

    def get_schema(self, schema_id: int, subject_name: str | None = None, fmt: Any = None) -> Any:
        return self.registered

    def get_version(self, subject: str, version: int, deleted: bool = False) -> RegisteredSchema:
        if self.down:
            self.down -= 1
            raise ConnectionError("connection refused")
        if self.missing or (subject, version) != ("address-value", 1):
            raise SchemaRegistryError(404, 40402, f"Version {version} not found")
        schema = Schema(json.dumps(ADDRESS), "AVRO")
        return RegisteredSchema(subject=subject, version=1, schema_id=2, guid=None, schema=schema)


def test_a_schema_that_references_another_subject_reads_alike_by_every_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, a schema with references went to the deserializer record by record, and its
    fields in a referenced record were 'not a record' to the field check."""
    waits: list[int] = []
    readers = RegistryReaders(ReferencingClient(down=2), lambda: waits.append(1) is None)
    reader = readers.readers({1})[1]
    assert isinstance(reader, SchemaReader) and waits == [1, 1]  # waited, not poisoned
    fields = FieldMap(("home.lat", "work.lat"), "id", None)
    assert reader.problem(fields) is None
    assert reader.problem(FieldMap(("home.zone",))) == "field 'home.zone' is enum, not a number"
    full = {**ORDER, "fields": [ORDER["fields"][0]]}
    full["fields"] += [{"name": "home", "type": ADDRESS}, {"name": "work", "type": "Address"}]
    docs = [
        {"id": f"o{k}", "home": {"lat": k / 3, "zone": "N"}, "work": {"lat": -k, "zone": "S"}}
        for k in range(MIN_TABLE)
    ]
    values = [avro_record(full, d) for d in docs]
    assert reader.decode_table(values, fields) is not None

    def batch() -> Any:
        return decode_mixed(values, DecoderSchema(2), 1 << 20, readers, fields)

    for decoded in by_every_path(monkeypatch, batch):
        assert not decoded.rejections and decoded.ids == [d["id"] for d in docs]
        assert decoded.X.tolist() == [[d["home"]["lat"], d["work"]["lat"]] for d in docs]


def test_a_reference_the_registry_does_not_have_is_a_reason() -> None:
    readers = RegistryReaders(ReferencingClient(missing=True), lambda: pytest.fail("no wait"))
    reason = readers.readers({1})[1]
    assert reason == (
        "schema id 1 references a schema the registry does not have (Version 1 not found)"
    )
