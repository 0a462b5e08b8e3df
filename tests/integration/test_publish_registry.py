"""``store publish --feature-names`` against a real Schema Registry (issue 24, Build 3): the
names are checked against the subject's latest schema before anything is published."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from model_store import ModelStore
from tests.support.kafka import unique
from tests.support.registry import SchemaRegistry
from worker import cli

pytestmark = pytest.mark.schema_registry


def test_publish_refuses_a_name_the_subject_lacks_and_publishes_the_ones_it_has(
    schema_registry: SchemaRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    subject = f"{unique('publish')}-value"
    fields = [{"name": "id", "type": "string"}, {"name": "a", "type": "double"}]
    fields.append({"name": "b", "type": ["null", "long"]})
    avro = json.dumps({"type": "record", "name": "E", "fields": fields})
    SchemaRegistryClient({"url": schema_registry.url}).register_schema(
        subject, Schema(avro, "AVRO")
    )
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    model = tmp_path / "m.skops"
    sio.dump(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), model)
    store = tmp_path / "store"

    def publish(*names: str) -> int:
        path = tmp_path / "names.txt"
        path.write_text("\n".join(names))
        argv = ["store", "--store", str(store), "publish", "m", str(model), "--framework"]
        argv += ["sklearn", "--feature-names", str(path)]
        argv += ["--schema-registry", schema_registry.url, "--subject", subject]
        return cli.main(argv)

    assert publish("a", "c") == 2
    err = capsys.readouterr().err
    assert f"subject {subject!r}" in err and "no field 'c' in the writer schema" in err
    assert ModelStore(store).versions("m") == []  # nothing published
    assert publish("a", "b") == 0
    assert f"checked against {subject} version 1 (Avro)" in capsys.readouterr().out
    assert ModelStore(store).manifest("m")["input_schema"]["feature_names"] == ["a", "b"]
