"""Both adapters express one client policy (worker/transport/policy.py): each client's built
configuration, its names mapped back to the other's by the table below (written from the two
libraries' documentation, not from the adapters), holds the same values; a user's own setting
still wins over the policy."""

from __future__ import annotations

from typing import Any

import pytest

from worker.config import Settings, settings_from_dict
from worker.transport.kafka_python import clients as kp
from worker.transport.librdkafka import clients as rd

# kafka-python name -> librdkafka name, for every default the worker sets in both.
CLIENT = {
    "bootstrap_servers": "bootstrap.servers",
    "client_id": "client.id",
    "metadata_max_age_ms": "topic.metadata.refresh.interval.ms",
}
CONSUMER = {
    **CLIENT,
    "group_id": "group.id",
    "group_instance_id": "group.instance.id",
    "enable_auto_commit": "enable.auto.commit",
    "auto_offset_reset": "auto.offset.reset",
    "isolation_level": "isolation.level",
    "fetch_max_bytes": "fetch.max.bytes",
    "max_partition_fetch_bytes": "max.partition.fetch.bytes",
}
LABELS = {
    **CLIENT,
    "enable_auto_commit": "enable.auto.commit",
    "auto_offset_reset": "auto.offset.reset",
    "isolation_level": "isolation.level",
}
PRODUCER = {
    **CLIENT,
    "acks": "acks",
    "enable_idempotence": "enable.idempotence",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "max_request_size": "message.max.bytes",
    "delivery_timeout_ms": "message.timeout.ms",
    "transactional_id": "transactional.id",
    "transaction_timeout_ms": "transaction.timeout.ms",
}


def settings(library: str, **kafka: Any) -> Settings:
    return settings_from_dict(
        {
            "kafka": {"library": library, "group_id": "g", "instance_id": "3", **kafka},
            "topics": {"input": "in", "output": "out", "labels": "labels"},
            "models": [{"name": "m"}],
            "strategy": {"name": "soft_vote"},
        },
        environ={},
    )


def in_kafka_python_names(
    kafka_python: dict[str, Any], librdkafka: dict[str, Any], names: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both configurations over the names of the table, librdkafka's mapped back."""
    return (
        {name: kafka_python.get(name) for name in names},
        {name: librdkafka.get(rd_name) for name, rd_name in names.items()},
    )


SETTINGS = [
    {},
    {"processing_guarantee": "exactly_once"},
    {"processing_guarantee": "exactly_once", "transaction_timeout_ms": 200_000},
    {"static_membership": True, "metadata_refresh_s": 2.5},
]


@pytest.mark.parametrize("kafka", SETTINGS, ids=["default", "eos", "eos-long", "static"])
def test_both_adapters_build_the_same_policy(kafka: dict[str, Any]) -> None:
    k, r = settings("kafka-python", **kafka), settings("confluent-kafka", **kafka)
    for built_kp, built_rd, names in (
        (kp.consumer_config(k), rd.consumer_config(r), CONSUMER),
        (kp.labels_config(k), rd.labels_config(r), LABELS),
        (kp.producer_config(k), rd.producer_config(r), PRODUCER),
    ):
        mine, theirs = in_kafka_python_names(built_kp, built_rd, names)
        assert mine == theirs
    assert kp.common_config(k)["client_id"] == rd.common_config(r)["client.id"]


def test_delivery_is_bounded_by_the_policy_or_by_the_transaction() -> None:
    # Under exactly_once the transaction timeout bounds a record; librdkafka refuses a
    # message.timeout.ms above it, kafka-python one below linger + request timeout (30 s).
    for library, build, key in (
        ("kafka-python", kp.producer_config, "delivery_timeout_ms"),
        ("confluent-kafka", rd.producer_config, "message.timeout.ms"),
    ):
        assert build(settings(library))[key] == 120_000
        assert key not in build(settings(library, processing_guarantee="exactly_once"))


def test_a_users_own_setting_wins_over_the_policy() -> None:
    k = settings(
        "kafka-python",
        producer={"batch_size": 1 << 20, "linger_ms": 50},
        consumer={"isolation_level": "read_uncommitted"},
        client={"client_id": "mine"},
    )
    r = settings(
        "confluent-kafka",
        producer={"batch.size": 1 << 20, "linger.ms": 50},
        consumer={"isolation.level": "read_uncommitted"},
        client={"client.id": "mine"},
    )
    assert kp.producer_config(k)["batch_size"] == rd.producer_config(r)["batch.size"] == 1 << 20
    assert kp.producer_config(k)["linger_ms"] == rd.producer_config(r)["linger.ms"] == 50
    assert kp.consumer_config(k)["isolation_level"] == "read_uncommitted"
    assert rd.consumer_config(r)["isolation.level"] == "read_uncommitted"
    assert kp.labels_config(k)["client_id"] == rd.labels_config(r)["client.id"] == "mine"
