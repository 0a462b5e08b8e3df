"""Consumer lag of the worker's group on the input topic, refreshed by a background thread.

Lag per partition is the end offset minus the group's committed offset (minus the beginning
offset when the group has committed nothing there yet), read by the transport's
:class:`~worker.transport.Admin`. The thread has its own admin (its own clients), so it never
touches the worker's consumer (which is not thread-safe), and it never raises into the worker:
a failing refresh logs one warning per failure streak, drops the admin and is retried with a
new one at the next interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from worker.config import Settings
from worker.metrics import Metrics
from worker.service.input_topic import InputTopicWatch
from worker.transport import Admin, TopicPartition

__all__ = ["LagMonitor"]

log = logging.getLogger("streamfuse.lag")


class LagMonitor:
    """Refresh ``metrics.consumer_lag`` every ``settings.metrics.lag_interval_s`` seconds."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        make_admin: Callable[[], Admin],
        reached: Callable[[str | None], None] = lambda error: None,
        refreshed: Callable[[Admin, dict[TopicPartition, int]], None] | None = None,
        topic: InputTopicWatch | None = None,
    ) -> None:
        self.settings = settings
        self.topic = topic  # after each refresh: the input topic's id, for deletion and re-creation
        # after each refresh, with the admin and the lag: the membership watchdog's evidence
        self.refreshed = refreshed
        self.reached = reached  # after each refresh: None, or why the brokers did not answer
        self.metrics = metrics
        self.make_admin = make_admin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin: Admin | None = None
        self._failing = False
        self._watch_failing = False
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
        """Read the input topic's id (with a watch) and the offsets once, set the gauges; returns
        lag per partition (may raise)."""
        if self._admin is None:
            self._admin = self.make_admin()
        if self.topic is not None:  # first: the lag of a deleted topic may fail to read
            self._watch_topic(self.topic, self._admin)
        lags = self._admin.lag()
        labels = set()
        for tp, lag in lags.items():
            key = (tp.topic, str(tp.partition))
            self.metrics.consumer_lag.labels(*key).set(lag)
            labels.add(key)
        for gone in self._exported - labels:  # partitions that no longer exist
            self.metrics.consumer_lag.remove(*gone)
        self._exported = labels
        if self.refreshed is not None:
            try:
                self.refreshed(self._admin, lags)
                self._watch_failing = False
            except Exception as exc:  # the lag gauge stands; the evidence is read next time
                if not self._watch_failing:
                    log.warning("reading the consumer group for the watchdog failed: %r", exc)
                self._watch_failing = True
        return lags

    def _watch_topic(self, watch: InputTopicWatch, admin: Admin) -> None:
        """The input topic's id to the watch (may raise: a failed refresh)."""
        topic_id = admin.topic_id()
        self.metrics.input_topic_exists.set(0 if topic_id is None else 1)
        watch.observe(topic_id)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._tick()
                self._stop.wait(self.settings.metrics.lag_interval_s)
        finally:
            self._close_admin()

    def _tick(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # the worker must never stop for a metric
            self.reached(f"{type(exc).__name__}: {exc}")
            if not self._failing:
                log.warning("consumer lag unavailable, retrying every interval: %r", exc)
            self._failing = True
            self._close_admin()  # reconnect from scratch next time
            return
        self.reached(None)
        if self._failing:
            log.info("consumer lag available again")
            self._failing = False

    def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception as exc:  # closing a broken client is best effort
                log.debug("closing the lag admin failed: %s", exc)
