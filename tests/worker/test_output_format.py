"""``output.format`` and ``output.subject_strategy``: the settings and the generated schema,
against confluent-kafka's in-memory registry client (a fake for pure logic; the broker and
registry test is in tests/integration/test_schema_registry.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from worker.config import settings_from_dict
from worker.errors import ConfigError
from worker.schemas.output import AvroOutput, output_schema, output_subject

MINIMAL: dict[str, Any] = {"models": [{"name": "alpha"}], "strategy": {"name": "soft_vote"}}
URL = {"url": "http://127.0.0.1:1/apis/ccompat/v7"}


def test_json_is_the_default_and_avro_needs_a_registry() -> None:
    assert settings_from_dict(MINIMAL).output.format == "json"
    with pytest.raises((ConfigError, ValueError), match=r"schema_registry\.url"):
        settings_from_dict({**MINIMAL, "output": {"format": "avro"}})
    settings = settings_from_dict({**MINIMAL, "output": {"format": "avro"}, "schema_registry": URL})
    assert settings.output.subject_strategy == "topic"
    with pytest.raises((ConfigError, ValueError)):
        settings_from_dict({**MINIMAL, "output": {"format": "xml"}, "schema_registry": URL})


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        ("topic", "predictions-value"),
        ("record", "streamfuse.Prediction"),
        ("topic_record", "predictions-streamfuse.Prediction"),
    ],
)
def test_subject_strategies(strategy: str, subject: str) -> None:
    assert output_subject("predictions", strategy) == subject


def test_an_avro_prediction_reads_back_as_its_json_document() -> None:
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = MockSchemaRegistryClient({"url": "mock://"})
    out = AvroOutput(client, "preds", "record", output_schema(["rf", "hgb"], ["no", "yes"]))
    assert out.subject == "streamfuse.Prediction"
    doc = {
        "id": 7,
        "prediction": "yes",
        "scores": {"no": 0.2, "yes": 0.8},
        "strategy": "soft_vote",
        "models": {
            "rf": {
                "prediction": "yes",
                "scores": [0.1, 0.9],
                "classes": ["no", "yes"],
                "version": 1,
            },
            "hgb": {"error": "timeout", "version": 2},
        },
        "shadow": {"hard_vote": "no"},
        "degraded": True,
        "latency_ms": 1.5,
    }
    (value,) = out.encode([orjson.dumps(doc)])
    assert value[:5] == b"\x00" + out.schema_id.to_bytes(4, "big")
    back = AvroDeserializer(client)(value, SerializationContext("preds", MessageField.VALUE))
    assert back["models"]["hgb"] == {
        "prediction": None,
        "scores": None,
        "classes": None,
        "error": "timeout",
        "version": 2,
    }
    back["models"]["hgb"] = doc["models"]["hgb"]
    back["models"]["rf"].pop("error")
    assert {k: v for k, v in back.items() if v is not None} == doc
    with pytest.raises(ValueError, match="output schema"):
        out.encode([orjson.dumps({**doc, "latency_ms": "slow"})])
