"""The Kafka side of the worker: building clients, checking topics, and a transaction watchdog.

kafka-python is used as is; this module only gathers the settings in one place, waits for the
broker at start-up with a bounded backoff, and puts a deadline on transaction calls that
kafka-python would otherwise wait on forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from worker.config import Settings
from worker.errors import (
    BrokerUnavailableError,
    ConfigError,
    TransactionWatchdogError,
)

__all__ = [
    "admin_client",
    "ensure_topics",
    "input_consumer",
    "labels_consumer",
    "output_producer",
    "with_watchdog",
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


def _common(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        "client_id": f"streamfuse-{settings.kafka.instance_id}",
        # Each connection attempt gives up after 2 s; _retry_connect bounds the whole wait.
        "bootstrap_timeout_ms": 2000,
        **settings.kafka.client,
    }


def admin_client(settings: Settings) -> KafkaAdminClient:
    return _retry_connect(settings, lambda: KafkaAdminClient(**_common(settings)))


def input_consumer(settings: Settings, listener: Any = None) -> KafkaConsumer:
    config = {
        **_common(settings),
        "group_id": settings.kafka.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": settings.batch.max_events,
        "max_partition_fetch_bytes": max(1 << 20, settings.validation.max_event_bytes + 1024),
        "fetch_max_bytes": max(50 << 20, settings.validation.max_event_bytes * 2),
        **settings.kafka.consumer,
    }
    consumer = _retry_connect(settings, lambda: KafkaConsumer(**config))
    consumer.subscribe([settings.topics.input], listener=listener)
    return consumer


def labels_consumer(settings: Settings) -> KafkaConsumer:
    config = {
        **_common(settings),
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "latest",
        "isolation_level": "read_committed",
        **settings.kafka.consumer,
    }
    return _retry_connect(settings, lambda: KafkaConsumer(**config))


def output_producer(settings: Settings) -> KafkaProducer:
    config: dict[str, Any] = {
        **_common(settings),
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


def ensure_topics(settings: Settings, admin: KafkaAdminClient) -> None:
    """Every configured topic exists (created when ``topics.create``); labels co-partitioned."""
    t = settings.topics
    wanted = {
        "topics.input": t.input,
        "topics.output": t.output,
        "topics.dead_letter": t.dead_letter,
    }
    if t.labels:
        wanted["topics.labels"] = t.labels
    existing = set(admin.list_topics())
    missing = {k: v for k, v in wanted.items() if v not in existing}
    if missing and not t.create:
        key, name = next(iter(missing.items()))
        raise ConfigError(
            key, f"topic {name!r} does not exist (create it, or set topics.create: true)"
        )
    if missing:
        new = [NewTopic(name, t.partitions, 1) for name in sorted(set(missing.values()))]
        try:
            admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass
        log.info("created topics %s", ", ".join(sorted(set(missing.values()))))
    if t.labels:
        counts = _partition_counts(admin, [t.input, t.labels])
        if counts[t.input] != counts[t.labels]:
            raise ConfigError(
                "topics.labels",
                f"{t.labels!r} has {counts[t.labels]} partitions but "
                f"{t.input!r} has {counts[t.input]}; co-partition them (same count, same keys) so "
                "each worker sees the labels of its own events",
            )


def _partition_counts(admin: KafkaAdminClient, topics: list[str]) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while True:
        described = admin.describe_topics(topics)
        counts = {d["name"]: len(d.get("partitions") or []) for d in described}
        if all(counts.get(t, 0) > 0 for t in topics) or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def with_watchdog(call: Callable[[], T], name: str, timeout_s: float) -> T:
    """Run a blocking client call with a deadline (kafka-python gives some none)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed back to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"watchdog-{name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TransactionWatchdogError(name, timeout_s)
    if "error" in box:
        raise box["error"]
    return box["value"]
