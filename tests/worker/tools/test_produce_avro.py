"""``streamfuse produce --format avro``: the event schema is where the worker looks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.config import settings_from_dict
from worker.errors import ConfigError
from worker.tools.produce_avro import avro_event_schema

MINIMAL: dict[str, Any] = {"models": [{"name": "alpha"}], "strategy": {"name": "soft_vote"}}


def test_features_at_their_input_fields_paths_id_and_time() -> None:
    settings = settings_from_dict(
        {
            **MINIMAL,
            "input": {
                "fields": {"mean radius": "features.mean_radius"},
                "id_field": "event_id",
                "ts_field": "at",
            },
        }
    )
    schema = json.loads(avro_event_schema(settings, ["mean radius", "f1"]))
    assert [f["name"] for f in schema["fields"]] == ["event_id", "features", "f1", "at"]
    nested = schema["fields"][1]["type"]
    assert nested["fields"] == [{"name": "mean_radius", "type": "double"}]


def test_a_feature_name_avro_cannot_take_names_input_fields() -> None:
    with pytest.raises(ConfigError, match=r"input\.fields.*features\.mean_radius"):
        avro_event_schema(settings_from_dict(MINIMAL), ["mean radius"])
