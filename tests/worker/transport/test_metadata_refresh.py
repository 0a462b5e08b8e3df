"""``kafka.metadata_refresh_s`` reaches each client in its own key name (no broker needed)."""

from __future__ import annotations

from typing import Any

from worker.config import settings_from_dict

MINIMAL: dict[str, Any] = {"models": [{"name": "m"}], "strategy": {"name": "soft_vote"}}


def settings(kafka: dict[str, Any]) -> Any:
    return settings_from_dict({**MINIMAL, "kafka": kafka}, environ={})


def test_new_partitions_are_looked_for_every_30_s_by_default_not_every_5_minutes() -> None:
    from worker.transport.kafka_python.clients import common_config as kafka_python
    from worker.transport.librdkafka.clients import consumer_config, producer_config

    s = settings({})
    assert s.kafka.metadata_refresh_s == 30.0
    assert kafka_python(s)["metadata_max_age_ms"] == 30_000
    for config in (consumer_config(s), producer_config(s)):
        assert config["topic.metadata.refresh.interval.ms"] == 30_000


def test_the_refresh_is_set_in_seconds_and_a_client_setting_still_wins() -> None:
    from worker.transport.kafka_python.clients import common_config as kafka_python
    from worker.transport.librdkafka.clients import consumer_config

    assert kafka_python(settings({"metadata_refresh_s": 2.5}))["metadata_max_age_ms"] == 2500
    own = settings({"metadata_refresh_s": 5, "client": {"metadata_max_age_ms": 1000}})
    assert kafka_python(own)["metadata_max_age_ms"] == 1000
    rd = settings(
        {
            "library": "confluent-kafka",
            "metadata_refresh_s": 5,
            "consumer": {"topic.metadata.refresh.interval.ms": 1000},
        }
    )
    assert consumer_config(rd)["topic.metadata.refresh.interval.ms"] == 1000
