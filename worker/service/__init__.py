"""The running service: the loop, the worker that wires it, and the process around it.

:mod:`.loop` (the batch state machine, over the transport protocols: it imports no Kafka
client), :mod:`.worker` (builds what is served, the transport, the delivery guarantee and the
loop), :mod:`.lag` (the consumer-lag thread), :mod:`.process` (``/metrics``, signals, exit
codes). May import everything in ``worker`` except :mod:`worker.tools`.
"""

from __future__ import annotations

__all__: list[str] = []
