"""One micro-batch as data: record types, decode and validate, the output layout, encode.

Pure functions over lists and numpy arrays: no Kafka, no store, no threads. May import only
:mod:`worker.errors` and libraries (numpy, orjson).
"""

from __future__ import annotations

__all__: list[str] = []
