"""``store publish --feature-names`` against a Schema Registry's input subject (issue 24, Build
3): the worker's start-up check, run before anything is published. The registry client is faked
here (the option logic); tests/integration/test_publish_registry.py runs the command on a real
registry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka.schema_registry import RegisteredSchema, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from worker.tools.publish import check_feature_names

AVRO = json.dumps(
    {
        "type": "record",
        "name": "E",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "x", "type": "double"},
            {"name": "label", "type": "string"},
            {
                "name": "m",
                "type": {
                    "type": "record",
                    "name": "M",
                    "fields": [{"name": "y", "type": ["null", "long"]}],
                },
            },
        ],
    }
)


class Registry:
    """Knows one subject, ``features-value`` (version 3, schema id 1)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_latest_version(self, subject: str) -> RegisteredSchema:
        self.asked.append(subject)
        if subject != "features-value":
            raise SchemaRegistryError(404, 40401, f"Subject {subject} not found")
        return RegisteredSchema(
            subject=subject, version=3, schema_id=1, guid=None, schema=Schema(AVRO, "AVRO")
        )


def args(names: Path, **given: Any) -> argparse.Namespace:
    defaults = {"config": None, "schema_registry": None, "subject": None}
    return argparse.Namespace(feature_names=names, **{**defaults, **given})


def config(tmp_path: Path, **sections: Any) -> Path:
    doc = {
        "kafka": {"bootstrap_servers": "localhost:9092"},
        "topics": {"input": "features", "output": "predictions"},
        "models": [{"name": "m"}],
        "strategy": {"name": "soft_vote"},
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_every_feature_a_number_of_the_subject_is_published(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = tmp_path / "names.txt"
    given = args(names, schema_registry="http://registry", subject="features-value")
    assert check_feature_names(["x", "m.y"], given, Registry()) == 0
    assert "checked against features-value version 3 (Avro)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("features", "why"),
    [
        (["x", "z"], "no field 'z' in the writer schema"),
        (["x", "label"], "field 'label' is string, not a number"),
    ],
)
def test_a_feature_the_subject_lacks_or_types_otherwise_is_exit_2_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], features: list[str], why: str
) -> None:
    given = args(
        tmp_path / "names.txt", schema_registry="http://registry", subject="features-value"
    )
    assert check_feature_names(features, given, Registry()) == 2
    err = capsys.readouterr().err
    assert why in err and "subject 'features-value'" in err
    assert f"--feature-names {tmp_path / 'names.txt'}" in err


def test_the_configs_input_topic_and_renames_are_the_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, input={"fields": {"mean_y": "m.y"}})
    registry = Registry()
    assert check_feature_names(["x", "mean_y"], args(tmp_path / "n", config=path), registry) == 0
    assert registry.asked == ["features-value"]  # <topics.input>-value
    assert check_feature_names(["x", "y"], args(tmp_path / "n", config=path), registry) == 2
    assert "no field 'y'" in capsys.readouterr().err


def test_a_subject_not_registered_yet_is_not_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given = args(tmp_path / "n", schema_registry="http://registry", subject="other-value")
    assert check_feature_names(["anything"], given, Registry()) == 0
    assert "not checked" in capsys.readouterr().err


def test_without_a_registry_nothing_is_asked_and_a_subject_alone_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_feature_names(["z"], args(tmp_path / "n")) == 0
    assert check_feature_names(["z"], args(tmp_path / "n", config=config(tmp_path))) == 0
    assert check_feature_names(["z"], args(tmp_path / "n", subject="features-value")) == 2
    assert "--subject needs --schema-registry" in capsys.readouterr().err
    assert check_feature_names(["z"], args(tmp_path / "n", schema_registry="http://r")) == 2
    assert "--schema-registry needs --subject" in capsys.readouterr().err
