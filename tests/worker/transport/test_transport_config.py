"""Choosing the Kafka library, and each library's own key names (no broker needed).

The config takes ``kafka.client``, ``kafka.consumer`` and ``kafka.producer`` as given; opening
the transport checks their names the way its library takes them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any

import pytest

from worker.config import settings_from_dict
from worker.errors import ConfigError
from worker.transport import open_transport

MINIMAL: dict[str, Any] = {"models": [{"name": "m"}], "strategy": {"name": "soft_vote"}}


def settings(kafka: dict[str, Any], environ: dict[str, str] | None = None) -> Any:
    return settings_from_dict({**MINIMAL, "kafka": kafka}, environ=environ or {})


def test_kafka_python_is_the_default_and_the_env_selects_librdkafka() -> None:
    assert open_transport(settings({})).name == "kafka-python"
    chosen = settings({}, {"STREAMFUSE_KAFKA__LIBRARY": "confluent-kafka"})
    assert open_transport(chosen).name == "confluent-kafka"


def opened(kafka: dict[str, Any]) -> Any:
    """The settings, loaded (which must pass), then the transport opened on them."""
    return open_transport(settings(kafka))


def test_librdkafka_takes_its_own_key_names() -> None:
    s = settings(
        {
            "library": "confluent-kafka",
            "client": {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"},
            # Each client is checked as built: the shared section with its own.
            "consumer": {"session.timeout.ms": 6000, "sasl.username": "u", "sasl.password": "p"},
            "producer": {"sasl.username": "u", "sasl.password": "p"},
        }
    )
    assert s.kafka.client["security.protocol"] == "SASL_SSL"
    assert open_transport(s).name == "confluent-kafka"
    with pytest.raises(ConfigError) as info:  # the producer would have no credentials
        opened(
            {"library": "confluent-kafka", "client": s.kafka.client, "consumer": s.kafka.consumer}
        )
    assert info.value.key == "kafka.producer" and "sasl.password must be set" in info.value.problem
    with pytest.raises(ConfigError) as info:
        opened({"consumer": {"session.timeout.ms": 6000}})  # a librdkafka name, kafka-python
    assert info.value.key == "kafka.consumer.session.timeout.ms"


@pytest.mark.parametrize(
    "section, key, problem",
    [
        ("client", "sasl_plain_pasword", "setting valid for the consumer, producer and admin"),
        ("client", "max_poll_records", "valid for the consumer, producer and admin"),
        ("consumer", "ssl_pasword", "did you mean 'ssl_password'?"),
        ("producer", "linger.ms", "did you mean 'linger_ms'?"),
    ],
)
def test_kafka_python_names_the_key_and_hints(section: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        opened({section: {key: "hunter2"}})
    assert info.value.key == f"kafka.{section}.{key}"
    assert problem in info.value.problem and "hunter2" not in str(info.value)


def test_every_kafka_python_client_checks_the_names_before_it_is_built() -> None:
    """The tools build kafka-python's clients without a transport: each names the key too
    (before any broker is tried: this bootstrap address answers nothing)."""
    from worker.transport.kafka_python import clients

    s = settings({"bootstrap_servers": "127.0.0.1:1", "producer": {"linger": 5}})
    for build in (clients.admin_client, clients.output_producer, clients.input_consumer):
        with pytest.raises(ConfigError, match=r"kafka\.producer\.linger"):
            build(s)


def test_the_config_checks_no_client_setting_and_imports_no_transport() -> None:
    """Loading a config builds no client: the names are the transport's to check. A fresh
    interpreter, so that nothing else has imported the transport or a Kafka client yet."""
    kafka = {"library": "confluent-kafka", "consumer": {"sasl.passwrd": "x"}}
    code = (
        "import sys\n"
        "from worker.config import settings_from_dict\n"
        f"s = settings_from_dict({{**{MINIMAL!r}, 'kafka': {kafka!r}}}, environ={{}})\n"
        "print(s.kafka.consumer)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kafka', 'confluent_kafka')"
        " or m.startswith('worker.transport')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.splitlines() == ["{'sasl.passwrd': 'x'}", "[]"], done.stderr


def test_an_unknown_librdkafka_key_is_named_at_start_up_without_its_value() -> None:
    from worker.transport.librdkafka.clients import build, make_consumer

    # Opening the transport builds each client without a broker, so the key is named then...
    with pytest.raises(ConfigError) as info:
        opened({"library": "confluent-kafka", "consumer": {"sasl.passwrd": "hunter2"}})
    assert info.value.key == "kafka.consumer.sasl.passwrd"
    assert "hunter2" not in str(info.value)
    # ... and a client built past it names the key the same way.
    with pytest.raises(ConfigError) as info:
        build(make_consumer, {"group.id": "g", "sasl.passwrd": "hunter2"}, "consumer")
    assert info.value.key == "kafka.consumer.sasl.passwrd"
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    "section, key, hint",
    [
        ("client", "ssl_cafile", "dotted, such as 'ssl.ca.location'"),
        ("producer", "linger_ms", "did you mean 'linger.ms'?"),
        ("consumer", "fetch.wait.max.ms", "refused its value"),
    ],
)
def test_librdkafka_names_the_section_and_hints(section: str, key: str, hint: str) -> None:
    value = "abc" if key == "fetch.wait.max.ms" else 5
    with pytest.raises(ConfigError) as info:
        opened({"library": "confluent-kafka", section: {key: value}})
    assert info.value.key == f"kafka.{section}.{key}"
    assert hint in info.value.problem


def test_librdkafka_without_its_package_stops_with_the_pip_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "confluent_kafka" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError) as info:
        settings({"library": "confluent-kafka"})
    assert info.value.key == "kafka.library"
    assert "pip install 'streamfuse[librdkafka]'" in info.value.problem


def test_secrets_in_librdkafka_names_are_redacted() -> None:
    s = settings(
        {
            "library": "confluent-kafka",
            "client": {"sasl.password": "p4ss", "sasl.username": "u53r", "ssl.key.pem": "PEM"},
        }
    )
    red = s.redacted()["kafka"]["client"]
    assert set(red.values()) == {"***"}


def test_topic_rules_every_adapter_applies() -> None:
    from worker.config import TopicsSettings
    from worker.transport.topics import check_copartitioned, missing_topics

    t = TopicsSettings(input="in", output="out", labels="lab", dead_letter="dlq")
    with pytest.raises(ConfigError) as info:
        missing_topics(t, {"in", "lab"})
    assert info.value.key == "topics.output" and "topics.create" in info.value.problem
    creating = t.model_copy(update={"create": True})
    assert missing_topics(creating, {"in", "lab"}) == ["dlq", "out"]
    assert missing_topics(creating, {"in", "out", "lab", "dlq"}) == []
    check_copartitioned(t, {"in": 4, "lab": 4})
    with pytest.raises(ConfigError) as info:
        check_copartitioned(t, {"in": 4, "lab": 2})
    assert info.value.key == "topics.labels" and "co-partition" in info.value.problem


def test_static_membership_names_the_instance_in_the_group() -> None:
    from worker.transport.librdkafka.clients import consumer_config

    static = settings({"group_id": "g", "instance_id": "3", "static_membership": True})
    assert static.kafka.group_instance_id == "g-3"
    assert settings({"group_id": "g", "instance_id": "3"}).kafka.group_instance_id is None
    if importlib.util.find_spec("confluent_kafka") is not None:
        assert consumer_config(static)["group.instance.id"] == "g-3"
        assert "group.instance.id" not in consumer_config(settings({}))


@pytest.mark.parametrize(
    "kafka",
    [
        {"processing_guarantee": "exactly_once"},  # kafka-python
        {"library": "confluent-kafka"},  # at_least_once
    ],
)
def test_transactions_spanning_batches_need_exactly_once_and_librdkafka(
    kafka: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError) as info:
        settings({**kafka, "transaction_interval_ms": 100})
    assert info.value.key == "kafka.transaction_interval_ms"
    chosen = settings(
        {"library": "confluent-kafka", "processing_guarantee": "exactly_once"}
        | {"transaction_interval_ms": 100}
    )
    assert chosen.kafka.transaction_interval_ms == 100


@pytest.mark.parametrize(
    ("kafka", "interval_ms"),
    [
        ({"library": "confluent-kafka", "processing_guarantee": "exactly_once"}, 100),
        ({"library": "confluent-kafka", "processing_guarantee": "at_least_once"}, 0),
        ({"library": "kafka-python", "processing_guarantee": "exactly_once"}, 0),
        ({"processing_guarantee": "exactly_once"}, 0),  # kafka-python, the default library
        (
            {"library": "confluent-kafka", "processing_guarantee": "exactly_once"}
            | {"transaction_interval_ms": 0},
            0,
        ),  # a transaction per batch, when asked for
    ],
)
def test_transactions_span_100_ms_by_default_where_they_can(
    kafka: dict[str, Any], interval_ms: int
) -> None:
    assert settings(kafka).kafka.transaction_interval_ms == interval_ms
