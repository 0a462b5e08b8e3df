"""Tooling beside the service: train, produce, replay, report, bench (and their data sets).

:mod:`.train` and :mod:`.own_commands` (``train``, ``fit``), :mod:`.own_args` (their command
lines), :mod:`.fit`, :mod:`.publish` (``store publish``), :mod:`.decisions` (``store
strategy``), :mod:`.rollout`, :mod:`.produce` with :mod:`.produce_avro` and
:mod:`.produce_framed` (events in the registry's formats), :mod:`.replay` with
:mod:`.rehearse` (``replay --rollout``), :mod:`.report` with :mod:`.report_rollout` (its
rollout chart), :mod:`.bench`, and their data: :mod:`.datasets` (demo data sets) and
:mod:`.tabular` (the user's CSV or Parquet files).

Imported lazily by the CLI, one command at a time. Tools may import anything in ``worker`` and
a Kafka client (``produce`` and the bench fill topics with kafka-python directly); nothing
outside :mod:`worker.tools` and :mod:`worker.cli` imports them. The comparative benchmarks are
not here: they live in the repository's ``benchmarks/``, outside the package.
"""

from __future__ import annotations

__all__: list[str] = []
