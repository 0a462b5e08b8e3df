"""kafka-python clients built from the settings, in one place.

Every client the worker and its tools build (consumer, producer, admin, the labels and lag
clients) takes its settings from :func:`common_config`, so security settings reach them all. At
start-up the builders wait for the broker with a bounded backoff; calls without a timeout of
their own run under :mod:`worker.transport.deadline`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from worker.config import Settings
from worker.errors import BrokerUnavailableError, KafkaCallStuckError
from worker.transport.deadline import bounded

__all__ = [
    "admin_client",
    "common_config",
    "input_consumer",
    "labels_consumer",
    "output_producer",
    "setting_names",
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
    return {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "client_id": f"streamfuse-{settings.kafka.instance_id}{suffix}",
        # Each connection attempt gives up after 2 s; _retry_connect bounds the whole wait.
        "bootstrap_timeout_ms": 2000,
        # New partitions of the input are seen (and the group rebalances onto them) this soon.
        "metadata_max_age_ms": int(settings.kafka.metadata_refresh_s * 1000),
        **overrides,
        **settings.kafka.client,
    }


def setting_names() -> dict[str, frozenset[str]]:
    """The setting names kafka-python accepts, per section of ``kafka.`` in the config."""
    consumer = frozenset(KafkaConsumer.DEFAULT_CONFIG)
    producer = frozenset(KafkaProducer.DEFAULT_CONFIG)
    client = consumer & producer & frozenset(KafkaAdminClient.DEFAULT_CONFIG)
    return {"client": client, "consumer": consumer, "producer": producer}


def admin_client(settings: Settings) -> KafkaAdminClient:
    return _retry_connect(settings, lambda: KafkaAdminClient(**common_config(settings)))


def input_consumer(settings: Settings, listener: Any = None) -> KafkaConsumer:
    config = {
        **common_config(settings),
        "group_id": settings.kafka.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": settings.batch.max_events,
        "max_partition_fetch_bytes": max(1 << 20, settings.validation.max_event_bytes + 1024),
        "fetch_max_bytes": max(50 << 20, settings.validation.max_event_bytes * 2),
        **({"group_instance_id": gid} if (gid := settings.kafka.group_instance_id) else {}),
        **settings.kafka.consumer,
    }
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
    config = {
        **common_config(settings),
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "latest",
        "isolation_level": "read_committed",
        **settings.kafka.consumer,
    }
    return _retry_connect(settings, lambda: KafkaConsumer(**config))


def output_producer(settings: Settings) -> KafkaProducer:
    config: dict[str, Any] = {
        **common_config(settings),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": max(1 << 20, settings.topics.dead_letter_max_bytes + 64 * 1024),
        **settings.kafka.producer,
    }
    if settings.kafka.processing_guarantee == "exactly_once":
        config["transactional_id"] = settings.kafka.effective_transactional_id
        config["transaction_timeout_ms"] = settings.kafka.transaction_timeout_ms
    return _retry_connect(settings, lambda: KafkaProducer(**config))
