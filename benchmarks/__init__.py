"""The comparative benchmarks of streamfuse: kept at the root of the repository, not installed.

Run with ``python -m benchmarks ...`` or ``dev/bench ...``; how, and the figures, in
``benchmarks/README.md`` (their history in ``benchmarks/HISTORY.md``). The modules:

- :mod:`benchmarks.harness`: the default command: the Kafka ceiling, the worker with each
  guarantee and each Kafka library, two workers, latency sweeps, a naive loop and an
  in-process profile, on one broker;
- :mod:`benchmarks.args`: its command line (kept apart so that ``--help`` stays fast);
- :mod:`benchmarks.broker`: the broker, gated topic fills, output timestamps and the worker as
  a subprocess;
- :mod:`benchmarks.rdkafka`: the confluent-kafka ceiling loop and the latency harness's paced
  producer and reader;
- :mod:`benchmarks.models`: the benchmark's models, events and the pipeline profile;
- :mod:`benchmarks.report`: the targets and the markdown tables;
- :mod:`benchmarks.predict` (``predict``): predict and load cost per framework;
- :mod:`benchmarks.drift` (``drift``): the drift monitor's cost, alone or in the whole worker;
- :mod:`benchmarks.scale` (``scale``): scale-out and takeover on one broker or a cluster;
- :mod:`benchmarks.combine` (``combine``): ``combine`` per strategy.

A benchmark may import anything; nothing in ``worker``, ``combiners`` or ``model_store`` imports
it. Timings depend on the machine and on whatever else runs on it; nothing here is a test.
"""

from __future__ import annotations

__all__: list[str] = []
