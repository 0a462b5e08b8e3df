"""One micro-batch as data: record types, decode and validate, the output layout, encode.

:mod:`.records` (the records a batch reads and writes, dead letters), :mod:`.decode` (JSON
events into one float array), :mod:`.framed` (a batch mixing Confluent-framed records with JSON,
decoded by schema id), :mod:`.layout` (how a model output's columns map to tasks and classes),
:mod:`.encode` (predictions into output records), :mod:`.headers` (input headers carried onto
the output, the trace context continued), :mod:`.sizing` (each batch's size and wait for
``batch.target_latency_ms``). Pure functions over lists and numpy arrays: no Kafka, no store,
no threads. May import only :mod:`worker.errors` and libraries (numpy, orjson).
"""

from __future__ import annotations

__all__: list[str] = []
