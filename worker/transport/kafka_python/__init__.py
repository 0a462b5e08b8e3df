"""The kafka-python adapter: the only worker code, besides the tools, that imports ``kafka``.

:class:`KafkaPythonTransport` builds the :mod:`worker.transport.base` objects from the
settings; :mod:`.clients` builds the raw clients (the bench and ``streamfuse produce`` use those
too, so every client gets the same settings, and each checks the user's key names first).
Importing it repairs kafka-python's group rejoin (:mod:`.rejoin`, guarded by the library's
version and source).
"""

from __future__ import annotations

from worker.config import Settings
from worker.transport.kafka_python import rejoin
from worker.transport.kafka_python.admin import KafkaPythonAdmin
from worker.transport.kafka_python.clients import (
    check_settings,
    input_consumer,
    labels_consumer,
    output_producer,
)
from worker.transport.kafka_python.sink import KafkaPythonSink
from worker.transport.kafka_python.source import KafkaPythonLabels, KafkaPythonSource

rejoin.install()

__all__ = [
    "KafkaPythonAdmin",
    "KafkaPythonLabels",
    "KafkaPythonSink",
    "KafkaPythonSource",
    "KafkaPythonTransport",
]


class KafkaPythonTransport:
    """:class:`worker.transport.Transport` for kafka-python: opening it checks the names in
    ``kafka.client``, ``kafka.consumer`` and ``kafka.producer``
    (:class:`~worker.errors.ConfigError`)."""

    name = "kafka-python"

    def __init__(self, settings: Settings) -> None:
        check_settings(settings)
        self.settings = settings

    def admin(self) -> KafkaPythonAdmin:
        return KafkaPythonAdmin(self.settings)

    def sink(self) -> KafkaPythonSink:
        s = self.settings
        return KafkaPythonSink(
            lambda: output_producer(s),
            transactional=s.kafka.processing_guarantee == "exactly_once",
            watchdog_s=s.kafka.watchdog_s,
        )

    def source(self) -> KafkaPythonSource:
        source = KafkaPythonSource(self.settings.kafka.watchdog_s)
        source.attach(input_consumer(self.settings, listener=source.listener()))
        return source

    def labels(self) -> KafkaPythonLabels | None:
        topic = self.settings.topics.labels
        if not topic:
            return None
        return KafkaPythonLabels(labels_consumer(self.settings), topic)
