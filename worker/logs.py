"""Logging: one line per notable event (start, rebalance, reload, degraded batch, errors).

Plain text by default; ``logging.json_lines: true`` writes one JSON object per line. Never one
line per event: dead letters are logged by :class:`DeadLetterLog`, at most one line per reason
per interval. The Kafka clients' own warnings (kafka-python's ``kafka.*`` loggers, librdkafka's
through ``streamfuse.librdkafka``) reach the same log through :class:`ClientLogLimit`: one line
per message template per interval, naming the client's thread.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable

import orjson

__all__ = ["ClientLogLimit", "DeadLetterLog", "configure_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def configure_logging(
    level: str = "INFO", json_lines: bool = False, client_interval_s: float = 60.0
) -> None:
    """The worker's log on stderr; the Kafka clients' WARNING and above in it too, at most one
    line per message template per ``client_interval_s`` (at ``DEBUG``: kafka-python's INFO and
    librdkafka's debug output as well, unlimited below WARNING)."""

    def handler() -> logging.Handler:
        out = logging.StreamHandler(sys.stderr)
        if json_lines:
            out.setFormatter(_JsonFormatter())
        else:
            out.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        return out

    root = logging.getLogger("streamfuse")
    root.handlers[:] = [handler()]
    root.setLevel(level)
    root.propagate = False
    # kafka-python logs every reconnect attempt at WARNING/ERROR, from its own threads too:
    # its records come through a handler of their own (a logger's filters do not see its
    # children's records), limited per template, then to the worker's handlers.
    client_level = max(logging.WARNING, logging.getLevelNamesMapping()[level])
    if level == "DEBUG":
        client_level = logging.INFO
    kafka_handler = _ToWorkerLog()
    kafka_handler.filters[:] = [ClientLogLimit(client_interval_s)]
    kafka = logging.getLogger("kafka")
    kafka.handlers[:] = [kafka_handler]
    kafka.setLevel(client_level)
    kafka.propagate = False
    # confluent-kafka logs on this logger directly (the adapter's "logger" setting), from the
    # thread that polls; it propagates to the worker's handler above. Its debug lines exist
    # only when the client's own "debug" setting asks for them: at DEBUG they all pass.
    librdkafka = logging.getLogger("streamfuse.librdkafka")
    librdkafka.filters[:] = [ClientLogLimit(client_interval_s)]
    librdkafka.setLevel(logging.DEBUG if level == "DEBUG" else client_level)
    # The model store's own records (a refused pointer, a trial not tried again) read as the
    # worker's, at the worker's level.
    store = logging.getLogger("model_store")
    store.handlers[:] = [_ToWorkerLog()]
    store.setLevel(level)
    store.propagate = False


class _ToWorkerLog(logging.Handler):
    """Hands a client's records to the handlers of the ``streamfuse`` logger (as they are when
    the record comes: a later ``configure_logging`` is followed)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("streamfuse").handle(record)


# What varies between events of one reason: quoted names and ids, sizes, positions.
_VARIES = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(?:\.\d+)?")
# ...and, in a client's messages, the reprs of its objects (<BrokerConnection ... host=...>)
# and remarks in parentheses ("(after 0ms in state CONNECT, 1 identical error(s) suppressed)").
_CLIENT_VARIES = re.compile(
    r"<[^<>]*(?:<[^<>]*>[^<>]*)*>|\((?:[^()]|\([^()]*\))*\)|" + _VARIES.pattern
)


class ClientLogLimit(logging.Filter):
    """Lets one record per message template through per ``interval_s``; adds the thread.

    The template is the message with its quoted names, numbers, object reprs and remarks in
    parentheses taken out, so a reconnect warning repeated for each attempt is one template.
    The record let through after a quiet interval says how many like it were held back.
    Records come from the clients' own threads (kafka-python's network thread), hence the
    lock. At most ``max_templates`` templates are followed; the others share one. Records
    below WARNING pass unlimited: they are the clients' debug output, there only when asked for.
    """

    def __init__(
        self,
        interval_s: float = 60.0,
        max_templates: int = 200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.max_templates = max_templates
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}  # template -> when it was last let through
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # debug output the user asked for (logging.level DEBUG): all of it
        message = record.getMessage()
        key = (record.name, _CLIENT_VARIES.sub("_", message))
        now = self.clock()
        with self._lock:
            if key not in self._last and len(self._last) >= self.max_templates:
                for old, when in list(self._last.items()):
                    if now - when >= self.interval_s and old not in self._held:
                        del self._last[old]
                if len(self._last) >= self.max_templates:
                    key = (record.name, "*")
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            held = self._held.pop(key, 0)
            self._last[key] = now
        more = ""
        if held and last is not None:
            more = f" ({held} more like it held back in the last {now - last:.0f} s)"
        # The record is the handler's own from here: its message is final.
        record.msg = f"{message} [thread {record.threadName}]{more}"
        record.args = None
        return True


class DeadLetterLog:
    """One warning per dead-letter reason per ``interval_s``, with how many were held back.

    Reasons that differ only in quoted names, ids and numbers ("duplicate id 'a'", "duplicate
    id 'b'") are one reason: its line quotes the first and counts the rest. A reason held back
    is reported by :meth:`flush` once its interval is over, even if it never comes again. At
    most ``max_reasons`` reasons are followed; the others share one line.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 30.0,
        max_reasons: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_reasons = max_reasons
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}  # reason -> when its last line was written
        self._held: dict[tuple[str, str], tuple[int, str]] = {}  # reason -> (count, an example)

    def add(self, stage: str, reason: str, n: int = 1) -> None:
        """Count ``n`` events dead-lettered at ``stage`` for ``reason``."""
        now = self.clock()
        key = (stage, _VARIES.sub("_", reason))
        if key not in self._last and len(self._last) >= self.max_reasons:
            self._forget(now)
            if len(self._last) >= self.max_reasons:
                key = (stage, "*")
                reason = "other reasons (too many different ones to follow)"
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            held, example = self._held.get(key, (0, reason))
            self._held[key] = (held + n, example)
            return
        held, _ = self._held.pop(key, (0, ""))
        self._last[key] = now
        more = ""
        if held and last is not None:
            more = f" ({held} more like it held back in the last {now - last:.0f} s)"
        self._write("dead-lettered %d %s at %s: %s%s", n, stage, reason, more)

    def flush(self) -> None:
        """Write the held-back counts whose interval is over."""
        if not self._held:
            return
        now = self.clock()
        for key, (held, example) in list(self._held.items()):
            since = now - self._last[key]
            if since >= self.interval_s:
                del self._held[key]
                self._last[key] = now
                self._write(
                    "dead-lettered %d more %s at %s in the last %.0f s, like: %s",
                    held,
                    key[0],
                    since,
                    example,
                )

    def _write(self, message: str, n: int, *args: object) -> None:
        self.logger.warning(message, n, "event" if n == 1 else "events", *args)

    def _forget(self, now: float) -> None:
        for key, last in list(self._last.items()):
            if now - last >= self.interval_s and key not in self._held:
                del self._last[key]
