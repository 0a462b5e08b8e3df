"""The Kafka transport: protocols in the project's own types, and one adapter per client.

Owns everything that speaks to a Kafka client. :mod:`.base` holds the protocols
(:class:`Source`, :class:`Sink`, :class:`LabelsReader`, :class:`Admin`) and their value types,
:mod:`.policy` the client defaults both adapters take, :mod:`.topics` the rules of
``Admin.ensure_topics``, :mod:`.membership` a member's place in its group, :mod:`.deadline`
blocking calls under a deadline; adapter packages (:mod:`.kafka_python`, :mod:`.librdkafka`)
implement the protocols, rename the policy into their client's keys, and are imported only
here, lazily, by :func:`open_transport`. May import :mod:`worker.config`, :mod:`worker.errors`
and :mod:`worker.batch.records`; nothing above it imports a Kafka client.
"""

from __future__ import annotations

from typing import Protocol

from worker.config import Settings
from worker.transport.base import (
    Admin,
    AssignmentChange,
    GroupDescription,
    GroupState,
    GroupToken,
    LabelsReader,
    Membership,
    Offsets,
    Polled,
    Sink,
    Source,
    Span,
    TopicPartition,
    merge_span,
)

__all__ = [
    "LIBRARIES",
    "Admin",
    "AssignmentChange",
    "GroupDescription",
    "GroupState",
    "GroupToken",
    "LabelsReader",
    "Membership",
    "Offsets",
    "Polled",
    "Sink",
    "Source",
    "Span",
    "TopicPartition",
    "Transport",
    "merge_span",
    "open_transport",
]

LIBRARIES = ("kafka-python", "confluent-kafka")


class Transport(Protocol):
    """Builds one client library's transport objects from the settings (each call a new one).

    Opening one checks the names in ``kafka.client``, ``kafka.consumer`` and ``kafka.producer``
    the way its library takes them, raising :class:`worker.errors.ConfigError` naming the first
    refused key (never its value) before any client connects. ``source`` and ``sink`` wait for
    the broker up to ``kafka.connect_timeout_s`` and raise
    :class:`worker.errors.BrokerUnavailableError` after that."""

    name: str

    def admin(self) -> Admin: ...

    def sink(self) -> Sink: ...

    def source(self) -> Source: ...

    def labels(self) -> LabelsReader | None:
        """The labels reader, or None when no labels topic is configured."""


def open_transport(settings: Settings, library: str | None = None) -> Transport:
    """The transport of ``library`` (default: ``kafka.library``), imported only now, so that a
    command that needs no Kafka never imports a client. Its settings are checked here
    (:class:`Transport`): a misspelt key stops start-up before the first poll."""
    library = library or settings.kafka.library
    if library == "kafka-python":
        from worker.transport.kafka_python import KafkaPythonTransport

        return KafkaPythonTransport(settings)
    if library == "confluent-kafka":
        from worker.transport.librdkafka import LibrdkafkaTransport

        return LibrdkafkaTransport(settings)
    raise ValueError(f"unknown Kafka library {library!r} (known: {', '.join(LIBRARIES)})")
