"""Records framed by a real Schema Registry (dev/schema-registry), read by a real worker."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

import combiners
from model_store import ModelStore
from tests.support import framed
from tests.support.kafka import Broker, wait_for
from tests.support.registry import SchemaRegistry
from tests.support.worker import Topics, WorkerProcess, produce, write_config

pytestmark = pytest.mark.schema_registry


def test_dev_registry_serves_the_confluent_api(schema_registry: SchemaRegistry) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": schema_registry.url})
    avro = '{"type": "record", "name": "Probe", "fields": [{"name": "x", "type": "double"}]}'
    schema_id = client.register_schema("probe-value", Schema(avro, "AVRO"))
    assert client.get_schema(schema_id).schema_type == "AVRO"
    assert client.get_latest_version("probe-value").schema_id == schema_id


# -- a worker reading framed records -------------------------------------------------------------


MODELS = ("linear", "hgb")


@pytest.fixture(scope="module")
def named_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """breast_cancer from a CSV with sklearn's column names ('mean radius', ...): models with
    feature names, which framed records' fields are mapped to."""
    from sklearn.datasets import load_breast_cancer

    from worker.tools.train import dataset_from_file, train

    root = tmp_path_factory.mktemp("named")
    import csv

    data = load_breast_cancer()
    with open(root / "breast_cancer.csv", "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow([*data.feature_names, "label"])
        out.writerows(
            [*x, y] for x, y in zip(data.data.tolist(), data.target.tolist(), strict=True)
        )
    dataset = dataset_from_file(root / "breast_cancer.csv", "label", task="classification")
    train(dataset, root / "model-store", seed=0, progress=False, models=MODELS)
    return root / "model-store"


@pytest.fixture(scope="module")
def named_rows(named_store: Path) -> np.ndarray:
    return np.asarray(ModelStore(named_store).load_dataset("test").arrays["X"])


def offline(store: Path, X: np.ndarray) -> np.ndarray:
    """soft_vote of the models, run directly on the rows."""
    s = ModelStore(store)
    P = np.stack([s.load(n).predict_outputs(X) for n in MODELS])
    stored = s.load_strategy("soft_vote")
    return np.asarray(combiners.load_state(stored.meta, stored.arrays).combine(P))


def feature_names(store: Path) -> list[str]:
    names = ModelStore(store).load(MODELS[0]).feature_names
    assert names, "the trained models have feature names"
    return list(names)


def registry_config(registry: SchemaRegistry, names: list[str]) -> dict[str, Any]:
    return {
        "models": [{"name": n} for n in MODELS],
        "schema_registry": {"url": registry.url, "timeout_s": 2.0},
        "input": {"fields": framed.input_fields(names)},
    }


def dead_reasons(records: list[Any]) -> list[str]:
    return [dict(r.headers)["streamfuse.error"].decode() for r in records]


@pytest.mark.kafka
def test_avro_protobuf_json_schema_and_json_on_one_topic_predicted_as_offline(
    kafka: Broker,
    schema_registry: SchemaRegistry,
    topics: Callable[..., Topics],
    group_factory: Callable[[str], str],
    named_store: Path,
    named_rows: np.ndarray,
    tmp_path: Path,
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": schema_registry.url})
    t = topics()
    names = feature_names(named_store)
    X = np.resize(named_rows, (200, named_rows.shape[1]))
    writers = [
        framed.avro(client, t.input, names),  # <topic>-value: checked at start-up
        framed.protobuf(client, t.input, names, subject=f"{t.input}-proto"),
        framed.json_schema(client, t.input, names, subject=f"{t.input}-json"),
    ]
    ids = [f"e-{k}" for k in range(len(X))]
    good: list[bytes] = []
    for k, (event_id, row) in enumerate(zip(ids, X.tolist(), strict=True)):
        if k % 4 == 3:
            good.append(orjson.dumps({"id": event_id, "features": row}))  # plain JSON
        else:
            good.append(writers[k % 4](event_id, row))
    row0 = X[0].tolist()
    missing = framed.avro(client, t.input, names, subject=f"{t.input}-old", drop=names[0])
    as_text = framed.json_schema(
        client, t.input, names, subject=f"{t.input}-text", **{framed.field_name(names[1]): "string"}
    )
    text_row: list[Any] = [*row0]
    text_row[1] = str(row0[1])
    bad = {
        "unknown": b"\x00" + (987_654).to_bytes(4, "big") + good[0][5:],
        "missing": missing("bad-missing", row0),
        "string": as_text("bad-string", text_row),
        "truncated": writers[0]("bad-truncated", row0)[:40],
        "no id": b"\x00\x00",
    }
    stream = good[:100] + list(bad.values()) + good[100:]
    produce(kafka.bootstrap, t.input, stream)
    config = write_config(
        tmp_path / "c.yaml",
        store=named_store,
        bootstrap=kafka.bootstrap,
        topics=t,
        group=group_factory("sr"),
        shadows=(),
        **registry_config(schema_registry, names),
    )
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        out = kafka.consume_all(t.output, len(good), timeout=90)
        dead = kafka.consume_all(t.dead_letter, len(bad), timeout=30)
    finally:
        worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.text()
    assert f"input schema checked: {t.input}-value version 1 (Avro)" in worker.text()
    docs = [orjson.loads(r.value) for r in out]
    assert sorted(d["id"] for d in docs) == sorted(ids)
    row = {event_id: k for k, event_id in enumerate(ids)}
    scores = np.array([d["scores"] for d in docs])
    expected = offline(named_store, X)[[row[d["id"]] for d in docs]]
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12)

    reasons = dead_reasons(dead)
    assert len(reasons) == len(bad), reasons
    by_value = {r.value: reason for r, reason in zip(dead, reasons, strict=True)}
    assert by_value[bad["unknown"]].startswith("unknown schema id 987654")
    field0 = f"features.{framed.field_name(names[0])}"
    assert f"no field '{field0}' in the writer schema" in by_value[bad["missing"]]
    field1 = f"features.{framed.field_name(names[1])}"
    assert f"property '{field1}' is string, not a number" in by_value[bad["string"]]
    assert "(Avro): cannot decode" in by_value[bad["truncated"]]
    assert by_value[bad["no id"]] == "truncated record: no complete schema id"


@pytest.mark.kafka
def test_start_up_stops_when_the_input_subject_lacks_a_feature(
    kafka: Broker,
    schema_registry: SchemaRegistry,
    topics: Callable[..., Topics],
    group_factory: Callable[[str], str],
    named_store: Path,
    tmp_path: Path,
) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": schema_registry.url})
    t = topics()
    names = feature_names(named_store)
    lacking = framed.avro_schema(names, drop=names[2])
    client.register_schema(f"{t.input}-value", Schema(lacking, "AVRO"))
    config = write_config(
        tmp_path / "c.yaml",
        store=named_store,
        bootstrap=kafka.bootstrap,
        topics=t,
        group=group_factory("sr"),
        **registry_config(schema_registry, names),
    )
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    assert worker.wait(60) == 2, worker.text()
    field = f"features.{framed.field_name(names[2])}"
    assert f"no field '{field}' in the writer schema" in worker.text()
    assert f"subject '{t.input}-value'" in worker.text()


@pytest.mark.kafka
def test_a_registry_that_does_not_answer_for_20_s_loses_and_dead_letters_nothing(
    kafka: Broker,
    schema_registry: SchemaRegistry,
    topics: Callable[..., Topics],
    group_factory: Callable[[str], str],
    named_store: Path,
    named_rows: np.ndarray,
    tmp_path: Path,
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": schema_registry.url})
    t = topics()
    names = feature_names(named_store)
    X = named_rows[:60]
    ids = [f"r-{k}" for k in range(len(X))]
    avro = framed.avro(client, t.input, names)
    before = [avro(i, r) for i, r in zip(ids[:30], X[:30].tolist(), strict=True)]
    proto = framed.protobuf(client, t.input, names, subject=f"{t.input}-proto")
    during = [proto(i, r) for i, r in zip(ids[30:], X[30:].tolist(), strict=True)]
    produce(kafka.bootstrap, t.input, before)
    sections = registry_config(schema_registry, names)
    config = write_config(
        tmp_path / "c.yaml",
        store=named_store,
        bootstrap=kafka.bootstrap,
        topics=t,
        group=group_factory("sr"),
        shadows=(),
        **sections,
    )
    port = yaml.safe_load(config.read_text())["metrics"]["port"]
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        assert len(kafka.consume_all(t.output, 30, timeout=60)) == 30
        with schema_registry.frozen():
            frozen_at = time.monotonic()
            produce(kafka.bootstrap, t.input, during)  # a schema id the worker has not seen
            reason = wait_for(lambda: _not_ready(port), timeout=15, what="/readyz saying why")
            assert "the schema registry does not answer" in reason
            time.sleep(max(0.0, 20 - (time.monotonic() - frozen_at)))
            assert len(kafka.consume_all(t.output, 31, timeout=1)) == 30
        out = kafka.consume_all(t.output, 60, timeout=60, idle_s=1)
        dead = kafka.consume_all(t.dead_letter, 1, timeout=1)
        wait_for(lambda: _ready(port), timeout=15, what="/readyz 200 again")
    finally:
        worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.text()
    assert dead == []
    assert sorted(orjson.loads(r.value)["id"] for r in out) == sorted(ids)


def _readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def _not_ready(port: int) -> str | None:
    status, body = _readyz(port)
    return str(body.get("reason")) if status == 503 and "schema" in str(body) else None


def _ready(port: int) -> bool:
    return _readyz(port)[0] == 200


def test_a_protobuf_record_of_another_message_type_is_refused_not_misread(
    schema_registry: SchemaRegistry,
) -> None:
    """Only a schema's first message type is read: a record of its second one is rejected,
    never parsed as the first."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    from google.protobuf import descriptor_pb2, descriptor_pool
    from google.protobuf.message_factory import GetMessageClass

    from worker.batch.decode import Schema as ModelSchema
    from worker.batch.framed import FieldMap, decode_mixed
    from worker.schemas import RegistryReaders

    T = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="two.proto", package="two", syntax="proto3")
    for name, number in (("First", 1), ("Second", 1)):
        message = file.message_type.add(name=name)
        message.field.add(name="id", number=number, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
        message.field.add(name="x", number=2, type=T.TYPE_DOUBLE, label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    first, second = (
        GetMessageClass(pool.FindMessageTypeByName(f"two.{n}")) for n in ("First", "Second")
    )
    client = SchemaRegistryClient({"url": schema_registry.url})
    topic = f"two-{time.time_ns()}"
    ctx = SerializationContext(topic, MessageField.VALUE)
    conf = {"use.deprecated.format": False}
    values = [
        ProtobufSerializer(first, client, conf)(first(id="a", x=1.5), ctx),
        ProtobufSerializer(second, client, conf)(second(id="b", x=2.5), ctx),
    ]
    readers = RegistryReaders(client, wait=lambda: False)
    decoded = decode_mixed(values, ModelSchema(1, ("x",)), 1 << 20, readers, FieldMap(("x",)))
    assert decoded.ids == ["a"] and decoded.X.tolist() == [[1.5]]
    [rejection] = decoded.rejections
    assert rejection.index == 1
    assert "message type [1] of the schema; only its first, two.First, is read" in rejection.reason


@pytest.mark.kafka
def test_a_framed_record_without_a_registry_configured_is_dead_lettered_saying_so(
    kafka: Broker,
    schema_registry: SchemaRegistry,
    topics: Callable[..., Topics],
    group_factory: Callable[[str], str],
    named_store: Path,
    named_rows: np.ndarray,
    tmp_path: Path,
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": schema_registry.url})
    t = topics()
    names = feature_names(named_store)
    row = named_rows[0].tolist()
    avro = framed.avro(client, t.input, names)("framed", row)
    produce(kafka.bootstrap, t.input, [avro, orjson.dumps({"id": "plain", "features": row})])
    config = write_config(
        tmp_path / "c.yaml",
        store=named_store,
        bootstrap=kafka.bootstrap,
        topics=t,
        group=group_factory("nosr"),
        shadows=(),
        models=[{"name": n} for n in MODELS],
    )
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        out = kafka.consume_all(t.output, 1, timeout=60)
        dead = kafka.consume_all(t.dead_letter, 1, timeout=30)
    finally:
        worker.stop()
    assert [orjson.loads(r.value)["id"] for r in out] == ["plain"]
    [reason] = dead_reasons(dead)
    assert "Confluent-framed record" in reason and "schema_registry.url" in reason
    assert dead[0].value == avro  # the original bytes, replayable once a registry is set


def _without_nulls(value: Any) -> Any:
    """A decoded Avro document as JSON has it: a field JSON leaves out reads back as null."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _read_back(fmt: str, client: Any, topic: str, value: bytes) -> dict[str, Any]:
    """A prediction read back by confluent-kafka's deserializer of its format, as a document."""
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.schema_registry.json_schema import JSONDeserializer
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from worker.schemas.output_protobuf import document_of, message_class

    context = SerializationContext(topic, MessageField.VALUE)
    if fmt == "avro":
        return _without_nulls(AvroDeserializer(client)(value, context))
    if fmt == "protobuf":
        schema_id = int.from_bytes(value[1:5], "big")
        kind = message_class(client.get_schema(schema_id).schema_str)
        conf = {"use.deprecated.format": False}
        return document_of(ProtobufDeserializer(kind, conf)(value, context))
    doc: dict[str, Any] = JSONDeserializer(None, schema_registry_client=client)(value, context)
    return doc


OUTPUT_FORMATS = {"avro": "AVRO", "protobuf": "PROTOBUF", "json_schema": "JSON"}


@pytest.mark.kafka
def test_avro_protobuf_and_json_schema_output_read_back_equal_the_json_output(
    kafka: Broker,
    schema_registry: SchemaRegistry,
    topics: Callable[..., Topics],
    group_factory: Callable[[str], str],
    named_store: Path,
    named_rows: np.ndarray,
    tmp_path: Path,
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client = SchemaRegistryClient({"url": schema_registry.url})
    names = feature_names(named_store)
    values = [
        orjson.dumps({"id": f"e{i}", "features": row}) for i, row in enumerate(named_rows.tolist())
    ][:40]
    unknown = b"\x00" + (987654).to_bytes(4, "big") + b"payload"
    workers, outputs = [], {}
    for fmt in ("json", *OUTPUT_FORMATS):
        t = topics()
        produce(kafka.bootstrap, t.input, [*values, unknown])
        config = write_config(
            tmp_path / f"{fmt}.yaml",
            store=named_store,
            bootstrap=kafka.bootstrap,
            topics=t,
            group=group_factory(f"out-{fmt}"),
            shadows=("hard_vote",),
            output={"format": fmt},
            **registry_config(schema_registry, names),
        )
        workers.append(WorkerProcess(config, tmp_path / f"{fmt}.log").start())
        outputs[fmt] = t
    try:
        got = {
            fmt: kafka.consume_all(t.output, len(values), timeout=120) for fmt, t in outputs.items()
        }
        dead = kafka.consume_all(outputs["avro"].dead_letter, 1, timeout=30)
    finally:
        for worker in workers:
            worker.stop()
    as_json = [orjson.loads(r.value) for r in got["json"]]
    for doc in as_json:
        doc.pop("latency_ms")
    by_id = {doc["id"]: doc for doc in as_json}
    assert len(by_id) == len(values)
    for fmt, schema_type in OUTPUT_FORMATS.items():
        topic = outputs[fmt].output
        latest = client.get_latest_version(f"{topic}-value")
        assert latest.schema.schema_type == schema_type
        frame = b"\x00" + latest.schema_id.to_bytes(4, "big")
        assert all(r.value[:5] == frame for r in got[fmt]), fmt
        docs = [_read_back(fmt, client, topic, r.value) for r in got[fmt]]
        assert len(docs) == len(values), fmt
        for doc in docs:
            doc.pop("latency_ms")
            assert doc == by_id[doc["id"]], fmt
    served = f"models: {', '.join(MODELS)}; classes: 0, 1"
    assert served in client.get_latest_version(f"{outputs['avro'].output}-value").schema.schema_str
    assert dead[0].value == unknown  # the original bytes, and the writer schema id beside them
    assert dict(dead[0].headers)["streamfuse.schema_id"] == b"987654"


@pytest.mark.kafka
def test_streamfuse_produce_format_avro_protobuf_json_schema_served_by_the_registry_path(
    kafka: Broker,
    schema_registry: SchemaRegistry,
    topics: Callable[..., Topics],
    group_factory: Callable[[str], str],
    trained_store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from worker import cli
    from worker.schemas.readers import SchemaReader

    n = 20
    X = np.asarray(ModelStore(trained_store).load_dataset("test").arrays["X"])[:n]
    client = SchemaRegistryClient({"url": schema_registry.url})
    workers, sent, outputs = [], {}, {}
    for fmt, schema_type in OUTPUT_FORMATS.items():
        t = topics()
        config = write_config(
            tmp_path / f"{fmt}.yaml",
            store=trained_store,
            bootstrap=kafka.bootstrap,
            topics=t,
            group=group_factory(f"produce-{fmt}"),
            shadows=(),
            schema_registry={"url": schema_registry.url, "timeout_s": 2.0},
        )
        args = ["produce", "--config", str(config), "--dataset", "breast_cancer"]
        code = cli.main([*args, "--count", str(n), "--format", fmt, "--labels-delay", "0"])
        assert code == 0, capsys.readouterr().err
        latest = client.get_latest_version(f"{t.input}-value")
        assert latest.schema.schema_type == schema_type
        reader = SchemaReader(latest.schema_id, latest.schema, client)
        records = kafka.consume_all(t.input, n, timeout=30)
        docs = [reader.decode(r.value) for r in records]
        row = reader.row_getter([f"f{j}" for j in range(X.shape[1])])
        assert [list(row(d)) for d in docs] == X.tolist(), fmt
        sent[fmt] = [reader.getter("id")(d) for d in docs]
        workers.append(WorkerProcess(config, tmp_path / f"{fmt}.log").start())
        outputs[fmt] = t
    try:
        got = {fmt: kafka.consume_all(t.output, n, timeout=120) for fmt, t in outputs.items()}
    finally:
        for worker in workers:
            worker.stop()
    expected = offline_scores(trained_store, X)
    for fmt, worker in zip(outputs, workers, strict=True):
        assert "input schema checked" in worker.text(), fmt
        by_id = {orjson.loads(r.value)["id"]: orjson.loads(r.value)["scores"] for r in got[fmt]}
        assert sorted(by_id) == sorted(sent[fmt]), fmt
        scores = np.array([by_id[i] for i in sent[fmt]])
        np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-12, err_msg=fmt)


def offline_scores(store: Path, X: np.ndarray) -> np.ndarray:
    """soft_vote of the demo store's four models, run directly on the rows."""
    s = ModelStore(store)
    P = np.stack([s.load(m).predict_outputs(X) for m in ("rf", "hgb", "linear", "mlp")])
    stored = s.load_strategy("soft_vote")
    return np.asarray(combiners.load_state(stored.meta, stored.arrays).combine(P))


@pytest.mark.parametrize("fmt", list(OUTPUT_FORMATS))
def test_a_changed_output_layout_is_registered_only_when_the_registry_accepts_it(
    schema_registry: SchemaRegistry, fmt: str
) -> None:
    """The hot-reload relayout against the real registry (its compatibility BACKWARD for the
    subject), after a restart that registers the same schema again: other models served is a
    compatible new version (Protobuf: the same schema), classes that change type are refused
    and the old schema id kept."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from worker.schemas.output import output_class

    client = SchemaRegistryClient({"url": schema_registry.url})
    kind = output_class(fmt)
    topic = f"relayout-{fmt}-{time.time_ns()}"  # a subject of its own in the run's registry
    out = kind(client, topic, "topic", kind.output_schema(["rf"], [0, 1]))
    client.set_compatibility(out.subject, "BACKWARD")
    first = out.schema_id
    fresh = SchemaRegistryClient({"url": schema_registry.url})  # a restarted worker's client
    again = kind(fresh, topic, "topic", kind.output_schema(["rf"], [0, 1]))
    assert again.schema_id == first  # the same layout after a restart: the same schema id
    assert out.relayout(kind.output_schema(["rf", "mlp"], [0, 1])) is None
    assert client.get_latest_version(out.subject).schema_id == out.schema_id
    if fmt != "protobuf":
        assert out.schema_id != first  # the doc or description names the models served
    kept = out.schema_id
    why = out.relayout(kind.output_schema(["rf", "mlp"], ["no", "yes"]))
    assert why is not None and out.subject in why
    assert out.schema_id == kept == client.get_latest_version(out.subject).schema_id
