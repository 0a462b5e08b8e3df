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


def test_the_label_type_follows_the_classes_served() -> None:
    def fields(schema: str) -> dict[str, Any]:
        return {f["name"]: f["type"] for f in orjson.loads(schema)["fields"]}

    assert fields(output_schema(["m"], [0, 1]))["prediction"] == "long"
    assert fields(output_schema(["m"], ["no", "yes"]))["prediction"] == "string"
    assert fields(output_schema(["m"], [0, "x"]))["prediction"] == [
        "long",
        "double",
        "string",
        "boolean",
    ]
    regression = fields(output_schema(["m"], None))
    assert regression["prediction"] == "double" and "scores" not in regression
    two = fields(output_schema(["m"], None, n_outputs=2))["prediction"]
    assert two == {"type": "array", "items": "double"}


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
    out = AvroOutput(
        client, "preds", "record", output_schema(["rf", "hgb"], ["no", "yes"], scores_by_class=True)
    )
    assert out.subject == "streamfuse.Prediction"
    doc = {
        "id": 7,
        "prediction": "yes",
        "scores": {"no": 0.2, "yes": 0.8},
        "strategy": "soft_vote",
        "models": {
            "rf": {"prediction": "yes", "scores": {"no": 0.1, "yes": 0.9}, "version": 1},
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
    back["models"]["rf"] = {k: v for k, v in back["models"]["rf"].items() if v is not None}
    assert {k: v for k, v in back.items() if v is not None} == doc
    with pytest.raises(ValueError, match="output schema"):
        out.encode([orjson.dumps({**doc, "latency_ms": "slow"})])


class Compat:
    """confluent-kafka's in-memory registry client, whose compatibility check the test sets
    (the mock has none of its own)."""

    def __init__(self) -> None:
        from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
            MockSchemaRegistryClient,
        )

        self.client = MockSchemaRegistryClient({"url": "mock://"})
        self.compatible = True
        self.checked = 0

    def test_compatibility(self, subject: str, schema: Any) -> bool:
        self.checked += 1
        return self.compatible

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_changed_layout_is_registered_only_when_compatible() -> None:
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    registry = Compat()
    out = AvroOutput(registry, "preds", "topic", output_schema(["rf"], [0, 1]))
    first = out.schema_id
    assert out.relayout(output_schema(["rf"], [0, 1])) is None  # same layout: nothing to do
    assert registry.checked == 0 and out.schema_id == first
    registry.compatible = False
    why = out.relayout(output_schema(["rf", "mlp"], [0, 1]))
    assert why is not None and "not compatible with subject preds-value" in why
    assert out.schema_id == first  # the old schema still in use
    registry.compatible = True
    assert out.relayout(output_schema(["rf", "mlp"], [0, 1])) is None
    assert out.schema_id != first
    assert registry.get_latest_version("preds-value").schema_id == out.schema_id
    doc = {"id": "a", "prediction": 1, "strategy": "s", "models": {}, "degraded": False}
    (value,) = out.encode([orjson.dumps({**doc, "latency_ms": 2.0})])
    assert value[1:5] == out.schema_id.to_bytes(4, "big")
    back = AvroDeserializer(registry.client)(value, SerializationContext("p", MessageField.VALUE))
    assert back["prediction"] == 1
    why = out.relayout(None, "multi-task models have no Avro output yet")
    assert why is not None and "multi-task" in why


@pytest.mark.slow
def test_a_reload_the_avro_output_cannot_carry_is_refused_and_counted(
    tmp_path: Any, publish_tiny: Any, registry: Any
) -> None:
    import numpy as np

    from model_store import ModelStore
    from worker.inference.reload import Reloader
    from worker.inference.serving import build_serving
    from worker.inference.store import open_store
    from worker.metrics import Metrics

    store_dir = tmp_path / "store"
    for name in ("alpha", "beta"):
        publish_tiny(ModelStore(store_dir), name)
    X = np.random.default_rng(0).normal(size=(30, 3))
    ModelStore(store_dir).publish_dataset("heldout", {"X": X, "y": (X[:, 0] > 0).astype(int)})
    settings = settings_from_dict(
        {
            "store": str(store_dir),
            "models": [{"name": "alpha"}, {"name": "beta"}],
            "strategy": {"name": "soft_vote"},
        },
        environ={},
    )
    store = open_store(settings.store)
    serving = build_serving(store, settings)
    publish_tiny(store, "alpha", seed=9)  # v2, promoted
    seen: list[Any] = []

    def relayout(candidate: Any) -> str:
        seen.append(candidate)
        return "its output schema is not compatible with subject predictions-value"

    reloader = Reloader(store, settings, Metrics(registry), relayout)
    assert reloader.check(serving, None) is None  # v2 is prepared on a thread of its own
    assert reloader.wait(120)
    assert reloader.check(serving, None) is None  # refused at the swap: still serving v1
    assert [s.versions["alpha"] for s in seen] == [2]
    refused = {"model": "alpha", "outcome": "refused"}
    assert registry.get_sample_value("streamfuse_model_reloads_total", refused) == 1
    reloader._next_check = 0.0  # the next check is due now
    assert reloader.check(serving, None) is None and reloader.wait(120)
    assert reloader.check(serving, None) is None and len(seen) == 1  # not retried
