"""The readers over a Schema Registry: a registry that does not answer is waited for (never a
dead letter), an unknown id is one, and /readyz says why a batch waits. The client is faked:
this is the retry logic only (tests/integration/test_schema_registry.py freezes a real one)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka.schema_registry import RegisteredSchema, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from worker.batch.framed import FieldMap
from worker.errors import ConfigError, RegistryUnavailableError
from worker.schemas import RegistryReaders, check_input_subject
from worker.schemas.readers import SchemaReader
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
