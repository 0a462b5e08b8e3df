"""kafka-python clients built from the settings, in one place.

Every client the worker and its tools build (consumer, producer, admin, the labels and lag
clients) takes its settings from :func:`common_config`, so security settings reach them all;
the worker's own defaults are :mod:`worker.transport.policy`'s, renamed here. Each builder first
checks the user's key names (:func:`check_settings`), so a misspelt one is named, never its
value. At start-up the builders wait for the broker with a bounded backoff; calls without a
timeout of their own run under :mod:`worker.transport.deadline`.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from worker.config import Settings
from worker.errors import BrokerUnavailableError, ConfigError, KafkaCallStuckError
from worker.transport.deadline import bounded
from worker.transport.policy import policy

__all__ = [
    "admin_client",
    "check_settings",
    "common_config",
    "consumer_config",
    "input_consumer",
    "labels_config",
    "labels_consumer",
    "output_producer",
    "producer_config",
]

log = logging.getLogger("streamfuse.kafka")
T = TypeVar("T")


def _retry_connect(settings: Settings, make: Callable[[], T]) -> T:
    deadline = time.monotonic() + settings.kafka.connect_timeout_s
    delay = 0.25
    while True:
        try:
            return make()
        except (KafkaError, OSError) as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnavailableError(
                    settings.kafka.bootstrap_servers, settings.kafka.connect_timeout_s, str(exc)
                ) from exc
            log.warning("broker not reachable yet (%s); retrying in %.1fs", exc, min(delay, left))
            time.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)


def common_config(settings: Settings, suffix: str = "", **overrides: Any) -> dict[str, Any]:
    """Settings every client shares: bootstrap, client id, ``kafka.client`` (security)."""
    client = policy(settings).client
    return {
        "bootstrap_servers": client.bootstrap_servers,
        "client_id": f"{client.client_id}{suffix}",
        # Each connection attempt gives up after 2 s; _retry_connect bounds the whole wait.
        "bootstrap_timeout_ms": 2000,
        "metadata_max_age_ms": client.metadata_refresh_ms,
        **overrides,
        **settings.kafka.client,
    }


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The input consumer's settings: :func:`worker.transport.policy.policy` in kafka-python's
    names, under the user's own ``kafka.consumer``."""
    c = policy(settings).consumer
    return {
        **common_config(settings),
        "group_id": c.group_id,
        "enable_auto_commit": c.auto_commit,
        "auto_offset_reset": c.offset_reset,
        "isolation_level": c.isolation,
        "max_poll_records": c.max_poll_records,
        "max_partition_fetch_bytes": c.partition_fetch_max_bytes,
        "fetch_max_bytes": c.fetch_max_bytes,
        **({"group_instance_id": c.group_instance_id} if c.group_instance_id else {}),
        **settings.kafka.consumer,
    }


def labels_config(settings: Settings) -> dict[str, Any]:
    labels = policy(settings).labels
    return {
        **common_config(settings),
        "client_id": labels.client_id,
        "group_id": None,
        "enable_auto_commit": labels.auto_commit,
        "auto_offset_reset": labels.offset_reset,
        "isolation_level": labels.isolation,
        **settings.kafka.client,  # a client_id of the user's own
        **settings.kafka.consumer,
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    p = policy(settings).producer
    config: dict[str, Any] = {
        **common_config(settings),
        "acks": p.acks,
        "enable_idempotence": p.idempotence,
        "linger_ms": p.linger_ms,
        "batch_size": p.batch_bytes,
        "max_request_size": p.max_request_bytes,
        **({"delivery_timeout_ms": p.delivery_timeout_ms} if p.delivery_timeout_ms else {}),
        **settings.kafka.producer,
    }
    if p.transactional_id is not None:
        config["transactional_id"] = p.transactional_id
        config["transaction_timeout_ms"] = p.transaction_timeout_ms
    return config


# The names kafka-python accepts in each section of ``kafka.`` in the config, read on import.
_CONSUMER = frozenset(KafkaConsumer.DEFAULT_CONFIG)
_PRODUCER = frozenset(KafkaProducer.DEFAULT_CONFIG)
_NAMES = {
    "client": _CONSUMER & _PRODUCER & frozenset(KafkaAdminClient.DEFAULT_CONFIG),
    "consumer": _CONSUMER,
    "producer": _PRODUCER,
}


def check_settings(settings: Settings) -> None:
    """Raise :class:`ConfigError` naming the first key of ``kafka.client``, ``kafka.consumer``
    or ``kafka.producer`` kafka-python does not know, with the closest known name. Checks names
    only: kafka-python's own refusal quotes every value (a password, say); no client is built."""
    kafka = settings.kafka
    for section, given, what in (
        ("client", kafka.client, "setting valid for the consumer, producer and admin"),
        ("consumer", kafka.consumer, "consumer setting"),
        ("producer", kafka.producer, "producer setting"),
    ):
        allowed = _NAMES[section]
        for key in given:
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                raise ConfigError(
                    f"kafka.{section}.{key}",
                    f"not a kafka-python {what}" + (f"; did you mean '{hint[0]}'?" if hint else ""),
                )


def admin_client(settings: Settings) -> KafkaAdminClient:
    check_settings(settings)
    return _retry_connect(settings, lambda: KafkaAdminClient(**common_config(settings)))


def input_consumer(settings: Settings, listener: Any = None) -> KafkaConsumer:
    check_settings(settings)
    config = consumer_config(settings)
    consumer = _retry_connect(settings, lambda: KafkaConsumer(**config))
    consumer.subscribe([settings.topics.input], listener=listener)
    _await_partitions(settings, consumer, settings.topics.input)
    return consumer


def _await_partitions(settings: Settings, consumer: KafkaConsumer, topic: str) -> None:
    """Wait (bounded by ``kafka.connect_timeout_s``) until the consumer's metadata holds the
    input topic's partitions, before the first poll joins the group. kafka-python can lose the
    metadata refresh ``subscribe()`` asks for when an older request answers first; a leader that
    joins then assigns nothing ("No partition metadata for topic"), and the rejoin the metadata
    causes later is the one that could wedge (:mod:`.rejoin`)."""
    deadline = time.monotonic() + settings.kafka.connect_timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            # Fetches every topic's metadata when this one is unknown (a call with no timeout
            # of its own: the watchdog bounds it).
            partitions = bounded(
                lambda: consumer.partitions_for_topic(topic), "metadata", max(0.5, min(left, 10))
            )
        except (KafkaError, KafkaCallStuckError) as exc:
            log.debug("no metadata for %s yet (%s)", topic, exc)
            partitions = set()
        if partitions:
            return
        if left <= 0:
            log.warning(
                "no partitions of %s in the consumer's metadata after %.0f s; joining anyway",
                topic,
                settings.kafka.connect_timeout_s,
            )
            return
        time.sleep(min(0.2, max(0.0, left)))


def labels_consumer(settings: Settings) -> KafkaConsumer:
    check_settings(settings)
    config = labels_config(settings)
    return _retry_connect(settings, lambda: KafkaConsumer(**config))


def output_producer(settings: Settings) -> KafkaProducer:
    check_settings(settings)
    config = producer_config(settings)
    return _retry_connect(settings, lambda: KafkaProducer(**config))
