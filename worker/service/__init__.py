"""The running service: the loop, the worker that wires it, and the process around it.

:mod:`.loop` (the batch state machine, over the transport protocols: it imports no Kafka
client), :mod:`.worker` (builds what is served, the transport, the delivery guarantee and the
loop), :mod:`.consumer` (the input consumer, which the watchdog may rebuild), :mod:`.watchdog`
(a wedged group membership noticed and acted on), :mod:`.input_topic` (the input topic watched
for deletion and re-creation), :mod:`.lag` (the consumer-lag thread), :mod:`.heldout` (the
held-out baseline), :mod:`.reference` (the drift monitor of what is served), :mod:`.promotion`
(champion/challenger), :mod:`.rollout` and :mod:`.rollout_record` (a canary rollout and its
stored record), :mod:`.tracing` (OpenTelemetry spans, when configured), :mod:`.health`
(the verdicts of ``/healthz`` and ``/readyz``), :mod:`.http` (the worker's HTTP port),
:mod:`.process` (signals, exit codes). May import everything in ``worker`` except
:mod:`worker.tools`.
"""

from __future__ import annotations

__all__: list[str] = []
