"""The ``schema_registry`` and ``input`` settings: the extra, the secrets, the env override."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker import cli
from worker.config import load_settings, settings_from_dict

MINIMAL: dict[str, Any] = {"models": [{"name": "alpha"}], "strategy": {"name": "soft_vote"}}


def test_choosing_a_registry_without_the_extra_exits_2_with_the_pip_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def without_fastavro(name: str, *args: Any) -> Any:
        return None if name == "fastavro" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_fastavro)
    config = {**MINIMAL, "schema_registry": {"url": "http://127.0.0.1:1/apis/ccompat/v7"}}
    path = tmp_path / "sf.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    code = cli.main(["run", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "schema_registry.url" in err
    assert "pip install 'streamfuse[schema-registry]'" in err


def test_no_registry_needs_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    assert settings_from_dict(MINIMAL).schema_registry.url is None


def test_the_url_from_the_environment_and_basic_auth_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "sf.yaml"
    config = {**MINIMAL, "schema_registry": {"basic_auth": "reader:s3cr3t-pw"}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    monkeypatch.setenv("STREAMFUSE_SCHEMA_REGISTRY__URL", "https://registry:8081")
    settings = load_settings(path)
    assert settings.schema_registry.url == "https://registry:8081"
    assert settings.schema_registry.client_config()["basic.auth.user.info"] == "reader:s3cr3t-pw"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("settings %s %r", settings.redacted(), settings)
    shown = json.dumps(settings.redacted()) + repr(settings) + str(settings) + caplog.text
    assert "s3cr3t-pw" not in shown


def test_input_defaults_and_renames() -> None:
    settings = settings_from_dict(
        {**MINIMAL, "input": {"fields": {"mean radius": "features.mean_radius"}}}
    )
    assert settings.input.id_field == "id"
    assert settings.input.ts_field is None
    assert settings.input.fields == {"mean radius": "features.mean_radius"}
