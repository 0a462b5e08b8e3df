"""librdkafka clients (confluent-kafka) built from the settings, in one place.

librdkafka takes dotted key names (``bootstrap.servers``); ``kafka.client``, ``kafka.consumer``
and ``kafka.producer`` are passed through in those names. librdkafka's constructors do not
connect: :func:`wait_for_broker` asks for metadata until the broker answers or
``kafka.connect_timeout_s`` has passed. An unknown key fails at construction ("No such
configuration property"): :func:`check_settings` names the key (never its value) when the
transport is opened, and :func:`build` turns a refusal past it into a :class:`ConfigError` too.
The worker's own defaults are :mod:`worker.transport.policy`'s, renamed here.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from worker.config import Settings
from worker.errors import BrokerUnavailableError, ConfigError
from worker.transport.policy import policy

__all__ = [
    "admin_config",
    "build",
    "check_settings",
    "common_config",
    "consumer_config",
    "first_refused",
    "labels_config",
    "producer_config",
    "wait_for_broker",
]

log = logging.getLogger("streamfuse.kafka")
T = TypeVar("T")
_UNKNOWN = re.compile(r'No such configuration property: "([^"]+)"')
_INVALID = re.compile(r'Invalid value for configuration property "([^"]+)"')
_FAILED = re.compile(r"([a-z][a-z0-9]*(?:\.[a-z0-9]+)+) failed: (.*)")
# librdkafka's construction-time warnings (a consumer property given to a producer, no
# bootstrap.servers) are noise while only the names and values are being checked.
_QUIET = logging.getLogger("streamfuse.kafka.check")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def common_config(settings: Settings, suffix: str = "") -> dict[str, Any]:
    """Settings every client shares: bootstrap, client id, ``kafka.client`` (security)."""
    client = policy(settings).client
    return {
        "bootstrap.servers": client.bootstrap_servers,
        "client.id": f"{client.client_id}{suffix}",
        # librdkafka logs through the worker's own handler (format, level, JSON lines).
        "logger": logging.getLogger("streamfuse.librdkafka"),
        "topic.metadata.refresh.interval.ms": client.metadata_refresh_ms,
        **settings.kafka.client,
    }


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The input consumer's settings: :func:`worker.transport.policy.policy` in librdkafka's
    names, under the user's own ``kafka.consumer``."""
    c = policy(settings).consumer
    return {
        **common_config(settings),
        "group.id": c.group_id,
        "enable.auto.commit": c.auto_commit,
        "enable.auto.offset.store": False,
        "auto.offset.reset": c.offset_reset,
        "isolation.level": c.isolation,
        "fetch.max.bytes": c.fetch_max_bytes,
        "max.partition.fetch.bytes": c.partition_fetch_max_bytes,
        "message.max.bytes": c.partition_fetch_max_bytes,
        "receive.message.max.bytes": c.receive_max_bytes,
        **({"group.instance.id": c.group_instance_id} if c.group_instance_id else {}),
        **settings.kafka.consumer,
    }


def labels_config(settings: Settings) -> dict[str, Any]:
    """The labels reader assigns partitions itself and never commits: the group id is only
    what librdkafka requires of a consumer."""
    labels = policy(settings).labels
    return {
        **common_config(settings),
        "client.id": labels.client_id,
        "group.id": f"{settings.kafka.group_id}.labels-reader",
        "auto.offset.reset": labels.offset_reset,
        "enable.auto.commit": labels.auto_commit,
        "enable.auto.offset.store": False,
        "isolation.level": labels.isolation,
        **settings.kafka.client,  # a client.id of the user's own
        **settings.kafka.consumer,
    }


def producer_config(settings: Settings) -> dict[str, Any]:
    p = policy(settings).producer
    config: dict[str, Any] = {
        **common_config(settings),
        "acks": p.acks,
        "enable.idempotence": p.idempotence,
        "linger.ms": p.linger_ms,
        "batch.size": p.batch_bytes,
        "message.max.bytes": p.max_request_bytes,
        **({"message.timeout.ms": p.delivery_timeout_ms} if p.delivery_timeout_ms else {}),
        **settings.kafka.producer,
    }
    if p.transactional_id is not None:
        config["transactional.id"] = p.transactional_id
        config["transaction.timeout.ms"] = p.transaction_timeout_ms
    return config


def admin_config(settings: Settings, suffix: str = "") -> dict[str, Any]:
    return common_config(settings, suffix)


def build(make: Callable[[dict[str, Any]], T], config: dict[str, Any], section: str) -> T:
    """``make(config)``; an unknown key becomes a :class:`ConfigError` naming it."""
    try:
        return make(config)
    except (KafkaException, ValueError, TypeError) as exc:
        match = _UNKNOWN.search(str(exc))
        if match:
            raise ConfigError(
                f"kafka.{section}.{match.group(1)}", "not a librdkafka configuration property"
            ) from None
        # Never the message alone: librdkafka quotes values of some invalid settings.
        raise ConfigError(f"kafka.{section}", "librdkafka refused these settings") from None


def check_settings(settings: Settings) -> None:
    """Raise :class:`ConfigError` naming the first key of ``kafka.client``, ``kafka.consumer``
    or ``kafka.producer`` librdkafka refuses (:func:`first_refused`); called when the transport is
    opened, before any broker is tried."""
    kafka = settings.kafka
    refused = first_refused(kafka.client, kafka.consumer, kafka.producer)
    if refused is not None:
        raise ConfigError(*refused)


def first_refused(
    client: dict[str, Any], consumer: dict[str, Any], producer: dict[str, Any]
) -> tuple[str, str] | None:
    """The first of ``kafka.client``/``consumer``/``producer`` librdkafka refuses, as ``(key,
    problem)``, or ``None``. librdkafka checks its settings only when a client is built: this
    builds a client of each kind without ``bootstrap.servers`` (which connects to nothing, in
    milliseconds), so a misspelt name or a missing CA file stops start-up before any broker is
    tried. Never quotes a value."""
    secrets = [str(v) for s in (client, consumer, producer) for v in s.values() if v]
    sections = {"client": client, "consumer": consumer, "producer": producer}
    # Each client as it will be built: the shared settings with its own (SASL's user name may
    # sit in one section, its password in another).
    for kind, own in ((Consumer, "consumer"), (Producer, "producer")):
        config = {**client, **sections[own]}
        if not config:
            continue
        problem = _refusal({"group.id": "check", **config, "logger": _QUIET}, kind)
        if problem is None:
            continue
        key, what = problem
        section = own if key in sections[own] else "client" if key in client else own
        if key and "_" in key and "." not in key:
            dotted = key.replace("_", ".")
            retry = {"group.id": "check", dotted: config[key], "logger": _QUIET}
            if _refusal(retry, kind) is None:
                what += f"; librdkafka names are dotted: did you mean '{dotted}'?"
            else:
                what += " (librdkafka names are dotted, such as 'ssl.ca.location')"
        if not key and any(v in what for v in secrets if len(v) >= 4):
            what = "librdkafka refused these settings"
        return (f"kafka.{section}.{key}" if key else f"kafka.{section}", what)
    return None


def _refusal(config: dict[str, Any], kind: type) -> tuple[str, str] | None:
    try:
        made = kind(config)
    except (KafkaException, ValueError, TypeError) as exc:
        text = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        unknown, invalid = _UNKNOWN.search(text), _INVALID.search(text)
        if unknown:
            return unknown.group(1), "not a librdkafka configuration property"
        if invalid:
            return invalid.group(1), "librdkafka refused its value"
        failed = _FAILED.search(text)
        if failed and failed.group(1) in config:
            key = failed.group(1)
            # Only a file's path is quoted (ssl.ca.location), never inline key material.
            what = f" {config[key]}" if key.endswith(".location") else " it"
            return key, f"librdkafka could not use{what}: {failed.group(2)}"
        return "", f"librdkafka refused these settings: {text}"
    if isinstance(made, Consumer):
        made.close()
    return None


def wait_for_broker(settings: Settings, client: Consumer | Producer | AdminClient) -> None:
    """Ask for metadata until a broker answers, for up to ``kafka.connect_timeout_s``."""
    deadline = time.monotonic() + settings.kafka.connect_timeout_s
    delay = 0.25
    while True:
        left = deadline - time.monotonic()
        try:
            client.list_topics(timeout=max(0.5, min(2.0, left)))
            return
        except KafkaException as exc:
            if left <= 0:
                raise BrokerUnavailableError(
                    settings.kafka.bootstrap_servers,
                    settings.kafka.connect_timeout_s,
                    exc.args[0].str() if exc.args else str(exc),
                ) from None
            log.warning("broker not reachable yet (%s); retrying", exc.args[0].str())
            time.sleep(min(delay, max(0.0, left)))
            delay = min(delay * 2, 5.0)


def make_consumer(config: dict[str, Any]) -> Consumer:
    return Consumer(config)


def make_producer(config: dict[str, Any]) -> Producer:
    return Producer(config)


def make_admin(config: dict[str, Any]) -> AdminClient:
    return AdminClient(config)
