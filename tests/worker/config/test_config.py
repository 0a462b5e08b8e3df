"""Configuration: strict validation, environment overrides, path resolution, secrets."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from worker.config import Settings, load_settings, settings_from_dict
from worker.errors import ConfigError

MINIMAL: dict[str, Any] = {"models": [{"name": "rf"}], "strategy": {"name": "soft_vote"}}
SECRETS = {
    "sasl_plain_password": "pw-hunter2-xyzzy",
    "ssl_password": "ssl-pass-plugh-42",
    "sasl_plain_username": "user-frobozz",
}


def config(**sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL)
    data.update(copy.deepcopy(sections))
    return data


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# -- defaults ---------------------------------------------------------------------------------


def test_defaults_follow_the_design_notes(tmp_path: Path) -> None:
    s = settings_from_dict(MINIMAL, base_dir=tmp_path, environ={})
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.kafka.group_id == "streamfuse"
    assert s.kafka.processing_guarantee == "at_least_once"
    assert s.kafka.client == {}
    assert (s.topics.input, s.topics.output, s.topics.labels, s.topics.dead_letter) == (
        "features",
        "predictions",
        "labels",
        "features.dlq",
    )
    assert (s.batch.max_events, s.batch.max_wait_ms, s.batch.start_when_idle) == (512, 20, True)
    assert (s.runtime.model_threads, s.runtime.gil_switch_ms, s.runtime.gc_freeze) == (1, 0.5, True)
    assert s.on_model_error.policy == "renormalize"
    assert s.strategy.fit == "auto" and s.strategy.params == {}
    assert s.shadow_strategies == ()
    assert s.model_names == ["rf"]
    assert s.topics.replication_factor == -1  # the brokers' default.replication.factor
    assert s.models[0].version is None
    assert s.store.path == tmp_path / "model-store"
    assert s.store.key_file is None and not s.store.require_signature


def test_settings_are_immutable() -> None:
    s = settings_from_dict(MINIMAL, environ={})
    with pytest.raises(pydantic.ValidationError):
        s.batch.max_events = 3  # type: ignore[misc]


def test_transactional_id_defaults_to_group_and_instance() -> None:
    s = settings_from_dict(config(kafka={"group_id": "g", "instance_id": "7"}), environ={})
    assert s.kafka.effective_transactional_id == "streamfuse-g-7"
    s = settings_from_dict(config(kafka={"transactional_id": "mine"}), environ={})
    assert s.kafka.effective_transactional_id == "mine"


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key", "hint"),
    [
        ({**MINIMAL, "batchh": {}}, "batchh", "batch"),
        (config(kafka={"bootstrap_server": "x:1"}), "kafka.bootstrap_server", "bootstrap_servers"),
        (config(topics={"ouput": "p"}), "topics.ouput", "output"),
        (config(batch={"max_event": 3}), "batch.max_event", "max_events"),
        (config(validation={"max_event_byte": 99}), "validation.max_event_byte", "max_event_bytes"),
        (config(models=[{"name": "a"}, {"name": "b", "verson": 2}]), "models.1.verson", "version"),
        (config(strategy={"name": "soft_vote", "parms": {}}), "strategy.parms", "params"),
        (
            config(shadow_strategies=[{"name": "hard_vote", "fitt": "store"}]),
            "shadow_strategies.0.fitt",
            "fit",
        ),
        (config(on_model_error={"min_model": 2}), "on_model_error.min_model", "min_models"),
        (config(metrics={"prot": 1}), "metrics.prot", "port"),
        (config(labels={"windw": 5}), "labels.windw", "window"),
        (config(drift={"max_feature": 5}), "drift.max_feature", "max_features"),
        (config(reload={"intervl_s": 1}), "reload.intervl_s", "interval_s"),
        (config(logging={"levle": "INFO"}), "logging.levle", "level"),
        # A misspelt required section: named as the unknown key it is, not as "models missing".
        ({"model": [{"name": "rf"}], "strategy": {"name": "soft_vote"}}, "model", "models"),
        ({"models": [{"name": "rf"}], "stratgy": {"name": "soft_vote"}}, "stratgy", "strategy"),
        # Strategy names against the combiner registry, before any model loads.
        (config(strategy={"name": "soft_vot"}), "strategy.name", "soft_vote"),
        (
            config(shadow_strategies=[{"name": "stacking"}, {"name": "hedg"}]),
            "shadow_strategies.1.name",
            "hedge",
        ),
    ],
)
def test_unknown_key_names_the_dotted_key_with_a_suggestion(
    data: dict[str, Any], key: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, environ={})
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)
    assert f"did you mean '{hint}'" in str(info.value)


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(config(batch={"zzzzzz": 1}), environ={})
    assert info.value.key == "batch.zzzzzz"
    assert "did you mean" not in str(info.value)
    assert "max_events" in str(info.value) and "max_wait_ms" in str(info.value)


def test_an_unknown_strategy_lists_the_registered_ones_and_a_dotted_path_passes() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(config(strategy={"name": "zzzz"}), environ={})
    assert info.value.key == "strategy.name"
    assert "did you mean" not in str(info.value)
    assert "soft_vote" in str(info.value) and "'package.module:Class'" in str(info.value)
    # The user's own class is imported at start-up, not while the config is read.
    s = settings_from_dict(config(strategy={"name": "mypkg.fusion:Mine"}), environ={})
    assert s.strategy.name == "mypkg.fusion:Mine"


def test_unknown_key_in_a_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", config(kafka={"grup_id": "g"}))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.key == "kafka.grup_id"
    assert "did you mean 'group_id'" in str(info.value)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"strategy": {"name": "soft_vote"}}, "models"),
        ({"models": [{"name": "a"}]}, "strategy"),
        (config(models=[]), "models"),
        (config(models=[{"name": "a"}, {"name": "a"}]), "models"),
        (config(models=[{"name": "a", "version": 0}]), "models.0.version"),
        (config(batch={"max_events": 0}), "batch.max_events"),
        (config(batch={"max_events": "many"}), "batch.max_events"),
        (config(batch={"start_when_idle": "sometimes"}), "batch.start_when_idle"),
        (config(runtime={"gil_switch_ms": -1}), "runtime.gil_switch_ms"),
        (config(runtime={"gc_freeze": "yes please"}), "runtime.gc_freeze"),
        (config(kafka={"processing_guarantee": "at_most_once"}), "kafka.processing_guarantee"),
        (config(on_model_error={"policy": "ignore"}), "on_model_error.policy"),
        (config(strategy={"name": "soft_vote", "fit": "always"}), "strategy.fit"),
        (config(drift={"window": 5}), "drift.window"),
        (config(drift={"window": 100, "min_events": 101}), "drift.min_events"),
        (config(topics={"replication_factor": 0}), "topics.replication_factor"),
        (config(topics={"replication_factor": -2}), "topics.replication_factor"),
        (
            config(shadow_strategies=[{"name": "hard_vote"}, {"name": "hard_vote"}]),
            "shadow_strategies",
        ),
    ],
)
def test_invalid_values_name_their_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, environ={})
    assert info.value.key == key
    assert f"'{key}'" in str(info.value)
    assert isinstance(info.value, ValueError)


# -- environment overrides --------------------------------------------------------------------


def test_env_overrides_a_section_key_as_a_number() -> None:
    s = settings_from_dict(
        config(batch={"max_events": 100}), environ={"STREAMFUSE_BATCH__MAX_EVENTS": "7"}
    )
    assert s.batch.max_events == 7


def test_env_overrides_a_nested_client_key_and_keeps_the_file_keys() -> None:
    data = config(kafka={"client": {"ssl_cafile": "/etc/ca.pem"}})
    before = copy.deepcopy(data)
    s = settings_from_dict(data, environ={"STREAMFUSE_KAFKA__CLIENT__SECURITY_PROTOCOL": "SSL"})
    assert s.kafka.client == {"ssl_cafile": "/etc/ca.pem", "security_protocol": "SSL"}
    assert data == before  # the caller's mapping is not modified


def test_env_override_reaches_a_file_and_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "c.yaml", config(kafka={"bootstrap_servers": "file:9092"}))
    monkeypatch.setenv("STREAMFUSE_KAFKA__BOOTSTRAP_SERVERS", "env:9093")
    monkeypatch.setenv("STREAMFUSE_ON_MODEL_ERROR__POLICY", "fail")
    s = load_settings(path)
    assert s.kafka.bootstrap_servers == "env:9093"
    assert s.on_model_error.policy == "fail"


def test_env_override_with_an_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(MINIMAL, environ={"STREAMFUSE_BATCH__MAX_EVNTS": "3"})
    assert info.value.key == "batch.max_evnts"
    assert "did you mean 'max_events'" in str(info.value)


def test_env_ignores_other_prefixes_and_the_test_namespace() -> None:
    s = settings_from_dict(
        MINIMAL,
        environ={
            "STREAMFUSE_TEST_KAFKA": "1",
            "STREAMFUSE_TESTING__X": "1",
            "OTHER_BATCH__MAX_EVENTS": "3",
            "STREAMFUSE_BATCH____MAX_EVENTS": "3",
        },
    )
    assert s.batch.max_events == 512


@pytest.mark.parametrize("password", ["123456", "pa: ss"])
def test_env_password_for_the_client_stays_a_string(password: str) -> None:
    s = settings_from_dict(
        MINIMAL, environ={"STREAMFUSE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD": password}
    )
    assert s.kafka.client["sasl_plain_password"] == password


# -- paths ------------------------------------------------------------------------------------


def test_relative_store_resolves_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "deploy" / "conf" / "sf.yaml", config(store="../models"))
    s = load_settings(path, environ={})
    assert s.store.path.resolve() == (tmp_path / "deploy" / "models").resolve()


def test_absolute_store_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "store"
    path = write(tmp_path / "conf" / "sf.yaml", config(store=str(target)))
    assert load_settings(path, environ={}).store.path == target


def test_store_from_env_resolves_against_the_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path / "conf" / "sf.yaml", MINIMAL)
    s = load_settings(path, environ={"STREAMFUSE_STORE": "st"})
    assert s.store.path == tmp_path / "conf" / "st"


# -- load_settings errors ---------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value)
    assert "cannot read" in str(info.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("models: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "not valid YAML" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping(tmp_path: Path, content: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "mapping" in str(info.value)
    assert type(yaml.safe_load(content)).__name__ in str(info.value)


def test_empty_file_reports_the_missing_sections(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.key in {"models", "strategy"}
    assert "required" in str(info.value)


# -- security settings and secrets ------------------------------------------------------------


@pytest.mark.parametrize(
    "client",
    [
        {
            "security_protocol": "SSL",
            "ssl_cafile": "/etc/kafka/ca.pem",
            "ssl_certfile": "/etc/kafka/client.pem",
            "ssl_keyfile": "/etc/kafka/client.key",
            "ssl_password": SECRETS["ssl_password"],
            "ssl_check_hostname": True,
        },
        {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": SECRETS["sasl_plain_username"],
            "sasl_plain_password": SECRETS["sasl_plain_password"],
            "ssl_cafile": "/etc/kafka/ca.pem",
        },
    ],
    ids=["SSL", "SASL_SSL"],
)
def test_security_client_settings_pass_through_unchanged(
    tmp_path: Path, client: dict[str, Any]
) -> None:
    path = write(tmp_path / "c.yaml", config(kafka={"client": client}))
    s = load_settings(path, environ={})
    assert s.kafka.client == client


def _with_secrets(**kafka: Any) -> dict[str, Any]:
    return config(
        kafka={
            "client": dict(SECRETS),
            "producer": {"sasl_plain_password": SECRETS["sasl_plain_password"]},
            **kafka,
        }
    )


@pytest.mark.parametrize(
    "data",
    [
        _with_secrets(group_id=["not", "a", "string"]),
        _with_secrets(bootstrap_servers={"host": SECRETS["sasl_plain_password"]}),
        _with_secrets(processing_guarantee=SECRETS["ssl_password"]),
        _with_secrets(client=f"sasl_plain_password={SECRETS['sasl_plain_password']}"),
        _with_secrets(transaction_timeout_ms=SECRETS["ssl_password"]),
        _with_secrets(unknown_key=SECRETS["sasl_plain_password"]),
        {**_with_secrets(), "models": [{"name": SECRETS["ssl_password"], "version": "x"}]},
    ],
)
def test_secrets_never_appear_in_config_errors(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data, environ={})
    text = f"{info.value} {info.value.problem} {info.value.key} {info.value.args!r}"
    for secret in SECRETS.values():
        assert secret not in text


def test_secrets_from_env_never_appear_in_config_errors() -> None:
    secret = SECRETS["sasl_plain_password"]
    with pytest.raises(ConfigError) as info:
        settings_from_dict(
            MINIMAL,
            environ={
                "STREAMFUSE_KAFKA__CLIENT": f"sasl_plain_password={secret}",
                "STREAMFUSE_KAFKA__SASL_PLAIN_PASSWORD": secret,
            },
        )
    assert secret not in str(info.value)


def test_secret_on_an_invalid_yaml_line_is_not_printed(tmp_path: Path) -> None:
    secret = SECRETS["sasl_plain_password"]
    path = tmp_path / "c.yaml"
    path.write_text(
        "kafka:\n  client:\n"
        f"    sasl_plain_password: {secret}: oops\n"
        "models: [{name: rf}]\nstrategy: {name: soft_vote}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert secret not in str(info.value)


def test_redacted_hides_every_secret_and_keeps_the_rest(tmp_path: Path) -> None:
    data = config(
        kafka={
            "client": {
                "security_protocol": "SASL_SSL",
                **SECRETS,
                "ssl_keyfile": "/secret/key.pem",
            },
            "consumer": {"ssl_password": SECRETS["ssl_password"], "fetch_max_bytes": 1024},
            "producer": {"sasl_plain_password": SECRETS["sasl_plain_password"]},
        }
    )
    s = settings_from_dict(data, base_dir=tmp_path, environ={})
    red = s.redacted()
    flat = repr(red)
    for secret in [*SECRETS.values(), "/secret/key.pem"]:
        assert secret not in flat
    assert red["kafka"]["client"]["sasl_plain_password"] == "***"
    assert red["kafka"]["client"]["security_protocol"] == "SASL_SSL"
    assert red["kafka"]["consumer"]["fetch_max_bytes"] == 1024
    assert red["models"] == [{"name": "rf", "version": None}]
    assert red["store"]["path"] == str(tmp_path / "model-store")
    # Redaction is a view for logs: the settings keep the real values for the client.
    assert s.kafka.client["sasl_plain_password"] == SECRETS["sasl_plain_password"]


def test_settings_round_trip_through_model_validate() -> None:
    s = settings_from_dict(config(batch={"max_events": 9}), environ={})
    assert Settings.model_validate(s.model_dump()) == s


def test_a_number_from_the_environment_is_taken_for_a_text_key() -> None:
    """A StatefulSet hands the pod ordinal over as STREAMFUSE_KAFKA__INSTANCE_ID=2."""
    s = settings_from_dict(
        config(kafka={"group_id": "g"}), environ={"STREAMFUSE_KAFKA__INSTANCE_ID": "2"}
    )
    assert s.kafka.instance_id == "2"
    assert s.kafka.effective_transactional_id == "streamfuse-g-2"
    assert settings_from_dict(config(kafka={"instance_id": 7}), environ={}).kafka.instance_id == "7"
    with pytest.raises(ConfigError, match=r"kafka\.instance_id"):
        settings_from_dict(config(kafka={"instance_id": True}), environ={})
