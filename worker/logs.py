"""Logging: one line per notable event (start, rebalance, reload, degraded batch, errors).

Plain text by default; ``logging.json_lines: true`` writes one JSON object per line. Never one
line per event.
"""

from __future__ import annotations

import logging
import sys

import orjson

__all__ = ["configure_logging"]


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


def configure_logging(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("streamfuse")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # kafka-python logs every reconnect attempt at WARNING/ERROR; keep its chatter out.
    logging.getLogger("kafka").setLevel(logging.CRITICAL if level != "DEBUG" else logging.INFO)
