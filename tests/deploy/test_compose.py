"""docker-compose.yml against the Compose Specification's JSON schema, offline (the schema is
kept in tests/deploy/schemas/, its source named in the README there). The file is read as
Compose reads it, YAML merge keys (``<<: *streamfuse``) resolved, so each service is checked
with what it inherits; the schema refuses unknown keys, so a misspelt one fails."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.dashboards import REPO

COMPOSE = REPO / "docker-compose.yml"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"


@functools.cache
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator().iter_errors(doc)
    ]


def test_docker_compose_yml_is_valid_for_the_compose_specification() -> None:
    doc = compose()
    assert doc["services"]["worker"]["build"] == ".", "the x-streamfuse anchor was not merged"
    assert schema_errors(doc) == []


def _misspell(service: str, key: str, typo: str) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        entry = doc["services"][service]
        entry[typo] = entry.pop(key)

    return pytest.param(edit, typo, id=f"{service}.{typo}")


def _set(path: tuple[str, ...], value: Any, expected: str) -> Any:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path
        node = doc
        for name in parents:
            node = node[name]
        node[last] = value

    return pytest.param(edit, expected, id=".".join(path))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        _misspell("worker", "depends_on", "depend_on"),
        _misspell("init", "command", "comand"),
        _misspell("grafana", "environment", "enviroment"),
        _set(("services", "kafka", "healthcheck", "retry"), 30, "retry"),
        _set(
            ("services", "worker", "depends_on", "init", "condition"),
            "service_completed",
            "service_completed",
        ),
        _set(("services", "worker", "restart"), ["always"], "restart"),
        _set(("volume",), {"data": None}, "volume"),
    ],
)
def test_a_broken_compose_file_fails_the_schema(edit: Any, expected: str) -> None:
    doc = copy.deepcopy(compose())
    edit(doc)
    errors = schema_errors(doc)
    assert errors, "the schema accepted the broken file"
    assert any(expected in error for error in errors), errors
