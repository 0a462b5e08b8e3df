"""``output.format`` and ``output.subject_strategy``: the settings and the generated schema,
against confluent-kafka's in-memory registry client (a fake for pure logic; the broker and
registry test is in tests/integration/test_schema_registry.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from worker.config import settings_from_dict
from worker.errors import ConfigError
from worker.schemas.output import (
    AvroOutput,
    RegisteredOutput,
    output_class,
    output_schema,
    output_subject,
)
from worker.schemas.output_json_schema import JsonSchemaOutput
from worker.schemas.output_protobuf import ProtobufOutput, document_of, message_class

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
    for fmt, kind in (("protobuf", ProtobufOutput), ("json_schema", JsonSchemaOutput)):
        with pytest.raises((ConfigError, ValueError), match=r"schema_registry\.url"):
            settings_from_dict({**MINIMAL, "output": {"format": fmt}})
        settings = settings_from_dict(
            {**MINIMAL, "output": {"format": fmt}, "schema_registry": URL}
        )
        assert output_class(settings.output.format) is kind


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
        "arm": "candidate",
    }
    outside = {k: v for k, v in doc.items() if k != "arm"}  # no rollout: no arm
    value, plain = out.encode([orjson.dumps(doc), orjson.dumps(outside)])
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
    assert (
        AvroDeserializer(client)(plain, SerializationContext("preds", MessageField.VALUE))["arm"]
        is None
    )
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


# -- Protobuf and JSON Schema output -------------------------------------------------------------

DOC: dict[str, Any] = {
    "id": 7,
    "prediction": "yes",
    "scores": {"no": 0.2, "yes": 0.8},
    "strategy": "soft_vote",
    "models": {
        "rf": {"prediction": "no", "scores": {"no": 1.0, "yes": 0.0}, "version": 1},
        "hgb": {"error": "timeout", "version": 0},
    },
    "shadow": {"hard_vote": "no"},
    "arm": "champion",
    "degraded": False,
    "latency_ms": 0.0,
}


def _read_back(out: RegisteredOutput, client: Any, value: bytes) -> dict[str, Any]:
    """The document confluent-kafka's deserializer reads from ``value`` (Protobuf: as
    :func:`document_of` turns the message into the JSON document's fields)."""
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    context = SerializationContext("preds", MessageField.VALUE)
    if isinstance(out, ProtobufOutput):
        kind = message_class(client.get_schema(out.schema_id).schema_str)
        message = ProtobufDeserializer(kind, {"use.deprecated.format": False})(value, context)
        return document_of(message)
    back: dict[str, Any] = JSONDeserializer(None, schema_registry_client=client)(value, context)
    return back


@pytest.mark.parametrize("kind", [ProtobufOutput, JsonSchemaOutput])
@pytest.mark.parametrize(
    ("doc", "classes", "by_class"),
    [
        (DOC, ["no", "yes"], True),
        (
            {
                **DOC,
                "id": "evt-1",
                "prediction": 0,
                "scores": [0.75, 0.25],
                "classes": [0, 1],
                "models": {"rf": {"prediction": 0, "scores": [1.0, 0.0], "classes": [0, 1]}},
                "shadow": {"hard_vote": 1},
                "degraded": True,
            },
            [0, 1],
            False,
        ),
        (
            {
                "id": "r",
                "prediction": -1.5,
                "strategy": "mean",
                "models": {"rf": {"prediction": 0.0}, "hgb": {"error": "nan", "version": 2}},
                "degraded": True,
            },
            None,
            False,
        ),
    ],
    ids=["labels-by-class", "int-labels-list", "regression"],
)
def test_protobuf_and_json_schema_predictions_read_back_as_their_json_document(
    kind: type[RegisteredOutput], doc: dict[str, Any], classes: Any, by_class: bool
) -> None:
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )

    doc = orjson.loads(orjson.dumps({"latency_ms": 2.5, **doc}))  # a copy of its own
    doc["models"]["rf"]["version"] = 3
    client = MockSchemaRegistryClient({"url": "mock://"})
    schema = kind.output_schema(["rf", "hgb"], classes, scores_by_class=by_class)
    out = kind(client, "preds", "topic_record", schema)
    assert out.subject == "preds-streamfuse.Prediction"
    assert client.get_latest_version(out.subject).schema.schema_type == kind.schema_type
    values = out.encode([orjson.dumps(doc), orjson.dumps({**doc, "id": "second"})])
    assert all(v[:5] == b"\x00" + out.schema_id.to_bytes(4, "big") for v in values)
    assert _read_back(out, client, values[0]) == doc
    assert _read_back(out, client, values[1]) == {**doc, "id": "second"}


@pytest.mark.parametrize("kind", [ProtobufOutput, JsonSchemaOutput])
def test_a_document_that_does_not_fit_the_output_schema_is_refused(
    kind: type[RegisteredOutput],
) -> None:
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )

    client = MockSchemaRegistryClient({"url": "mock://"})
    out = kind(client, "preds", "topic", kind.output_schema(["rf"], ["no", "yes"]))
    with pytest.raises(ValueError, match="output schema"):
        out.encode([orjson.dumps({**DOC, "latency_ms": "slow"})])


def test_json_schema_output_validates_the_first_document_of_a_layout_only() -> None:
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )

    registry = Compat()
    schema = JsonSchemaOutput.output_schema(["rf"], ["no", "yes"], scores_by_class=True)
    out = JsonSchemaOutput(registry, "preds", "topic", schema)
    bad = orjson.dumps({**DOC, "latency_ms": "slow"})
    good = orjson.dumps(DOC)
    assert out.encode([good, bad])[1].endswith(bad)  # checked once: the layout, not each event
    wider = JsonSchemaOutput.output_schema(["rf", "mlp"], ["no", "yes"], scores_by_class=True)
    assert out.relayout(wider) is None
    with pytest.raises(ValueError, match="latency_ms"):
        out.encode([bad])  # a new layout: its first document checked again
    assert isinstance(registry.client, MockSchemaRegistryClient)


def test_protobuf_output_has_no_layout_for_mixed_labels_or_several_regression_outputs() -> None:
    with pytest.raises(ValueError, match="mix types"):
        ProtobufOutput.output_schema(["rf"], [0, "x"])
    with pytest.raises(ValueError, match="several outputs"):
        ProtobufOutput.output_schema(["rf"], None, n_outputs=2)
    registry = Compat()
    out = ProtobufOutput(registry, "preds", "topic", ProtobufOutput.output_schema(["rf"], [0, 1]))
    why = out.relayout(None, "the classes served mix types (int, str)")
    assert why is not None and "Protobuf output cannot carry it" in why


@pytest.mark.parametrize("kind", [AvroOutput, ProtobufOutput, JsonSchemaOutput])
def test_every_format_registers_a_changed_layout_only_when_compatible(
    kind: type[RegisteredOutput],
) -> None:
    registry = Compat()
    out = kind(registry, "preds", "topic", kind.output_schema(["rf"], [0, 1]))
    first = out.schema_id
    changed = kind.output_schema(["rf"], ["no", "yes"])  # the classes change type
    registry.compatible = False
    why = out.relayout(changed)
    assert why is not None and "not compatible with subject preds-value" in why
    assert out.schema_id == first and registry.checked == 1
    registry.compatible = True
    assert out.relayout(changed) is None and out.schema_id != first
    assert registry.get_latest_version("preds-value").schema_id == out.schema_id
    doc = {**DOC, "id": "a", "scores": [0.5, 0.5], "classes": ["no", "yes"], "models": {}}
    (value,) = out.encode([orjson.dumps(doc)])
    assert value[1:5] == out.schema_id.to_bytes(4, "big")
