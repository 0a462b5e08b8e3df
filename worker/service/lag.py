"""Consumer lag of the worker's group on the input topic, refreshed by a background thread.

Lag per partition is the end offset minus the group's committed offset (minus the beginning
offset when the group has committed nothing there yet). The thread has its own kafka-python
clients, so it never touches the worker's consumer (which is not thread-safe), and it never
raises into the worker: a failing refresh logs one warning per failure streak and is retried at
the next interval.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.structs import TopicPartition

from worker.config import Settings
from worker.metrics import Metrics

__all__ = ["LagMonitor"]

log = logging.getLogger("streamfuse.lag")

# Short enough that stop() is not held up for long by a request to an unreachable broker.
REQUEST_TIMEOUT_MS = 10_000


class LagMonitor:
    """Refresh ``metrics.consumer_lag`` every ``settings.metrics.lag_interval_s`` seconds."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin: KafkaAdminClient | None = None
        self._consumer: KafkaConsumer | None = None
        self._failing = False
        self._exported: set[tuple[str, str]] = set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="streamfuse-lag", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def refresh(self) -> dict[TopicPartition, int]:
        """Read the offsets once and set the gauge; returns lag per partition (may raise)."""
        admin, consumer = self._clients()
        topic = self.settings.topics.input
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return {}
        ends = consumer.end_offsets(tps)
        committed = _committed(admin, self.settings.kafka.group_id, tps)
        offsets = {tp: om.offset for tp, om in committed.items() if om is not None}
        missing = [tp for tp in tps if offsets.get(tp, -1) < 0]
        if missing:
            offsets.update(consumer.beginning_offsets(missing))
        lags = {tp: max(0, ends[tp] - offsets[tp]) for tp in tps}
        labels = set()
        for tp, lag in lags.items():
            key = (tp.topic, str(tp.partition))
            self.metrics.consumer_lag.labels(*key).set(lag)
            labels.add(key)
        for gone in self._exported - labels:  # partitions that no longer exist
            self.metrics.consumer_lag.remove(*gone)
        self._exported = labels
        return lags

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._tick()
                self._stop.wait(self.settings.metrics.lag_interval_s)
        finally:
            self._close_clients()

    def _tick(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # the worker must never stop for a metric
            if not self._failing:
                log.warning("consumer lag unavailable, retrying every interval: %r", exc)
            self._failing = True
            self._close_clients()  # reconnect from scratch next time
            return
        if self._failing:
            log.info("consumer lag available again")
            self._failing = False

    def _clients(self) -> tuple[KafkaAdminClient, KafkaConsumer]:
        k = self.settings.kafka
        common: dict[str, Any] = {
            "bootstrap_servers": k.bootstrap_servers,
            "client_id": f"streamfuse-{k.instance_id}-lag",
            "request_timeout_ms": REQUEST_TIMEOUT_MS,
            "bootstrap_timeout_ms": REQUEST_TIMEOUT_MS,
            **k.client,
        }
        if self._admin is None:
            self._admin = KafkaAdminClient(**common)
        if self._consumer is None:
            self._consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **common)
        return self._admin, self._consumer

    def _close_clients(self) -> None:
        for client in (self._consumer, self._admin):
            if client is None:
                continue
            try:
                client.close()
            except Exception as exc:  # closing a broken client is best effort
                log.debug("closing a lag client failed: %s", exc)
        self._admin = None
        self._consumer = None


def _committed(admin: KafkaAdminClient, group: str, tps: list[TopicPartition]) -> dict[Any, Any]:
    # kafka-python 3 renamed list_consumer_group_offsets to list_group_offsets({group: tps}).
    if hasattr(admin, "list_group_offsets"):
        return dict(admin.list_group_offsets({group: tps}).get(group) or {})
    return dict(admin.list_consumer_group_offsets(group, partitions=tps))
