"""``streamfuse replay --rollout``: rehearse a rollout over a recorded stream and its labels.

The worker's own :class:`~worker.service.rollout.Rollout` runs on the replayed batches with the
candidate and gates ``rollout start`` would record, against the store read-only: its moves are
kept in memory (:class:`RehearsalStore`), nothing is published or promoted. Each batch's labels
are joined as soon as it is predicted (in a live group they come later; the figures are the
same, the moves earlier). The gates' clock is the events' time (``ts``, else the record's): a
``--min-duration`` counts event time, and with no times at all only a duration of 0 passes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from prometheus_client import CollectorRegistry

from model_store import ModelStore, StoredRollout
from worker.accuracy.labels import Joined
from worker.config import Settings
from worker.errors import ConfigError
from worker.inference.serving import build_serving, open_store
from worker.metrics import Metrics
from worker.service.rollout import Rollout
from worker.tools.replay import event_records, label_of, replay_pipeline

__all__ = ["Move", "Rehearsal", "RehearsalStore", "command", "rehearse"]

BUILD_WAIT_S = 600.0  # a candidate version loads in a bounded child, as in the worker


class RehearsalStore:
    """The store for reading; the group's rollout records kept here, never written to it, and
    a promotion at ``done`` recorded, not made."""

    def __init__(self, store: ModelStore, group: str, record: dict[str, Any]) -> None:
        self._store = store
        self.group = group
        self.rollouts = [StoredRollout(group, 1, record, {}, signed=False)]
        self.promoted: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def active_rollout_version(self, name: str) -> int | None:
        return self.rollouts[-1].version if name == self.group else None

    def load_rollout(self, name: str, version: int | None = None) -> StoredRollout | None:
        if name != self.group:
            return None
        return self.rollouts[-1] if version is None else self.rollouts[version - 1]

    def publish_rollout(self, name: str, record: Any, *, expected: int | None) -> int:
        version = len(self.rollouts) + 1
        self.rollouts.append(StoredRollout(name, version, dict(record), {}, signed=False))
        return version

    def promote(self, name: str, version: int) -> None:
        self.promoted.append((name, version))


@dataclass
class Move:
    """One move of the rehearsed rollout, after how many replayed events."""

    after_events: int
    entry: dict[str, Any]


@dataclass
class Rehearsal:
    n_events: int
    n_labelled: int
    record: dict[str, Any]
    moves: list[Move] = field(default_factory=list)
    promoted: list[tuple[str, int]] = field(default_factory=list)  # at done: recorded, not made

    def table(self) -> str:
        lines = [f"{'after events':>12}  {'action':<9} {'step':>4} {'share':>6}  figures"]
        for move in self.moves:
            h = move.entry
            figures = h.get("figures") or {}
            shown = " ".join(f"{k}={_short(v)}" for k, v in figures.items() if v is not None)
            why = f" ({h['why']})" if h.get("why") else ""
            lines.append(
                f"{move.after_events:>12,}  {h['action']:<9} {h['step']:>4} {h['share']:>5g}%  "
                f"{shown}{why}".rstrip()
            )
        lines.append(f"\nthe rollout ends {self.record['status']} at step {self.record['step']}")
        lines += [
            f"(then {m} v{v} would be promoted: not done by a rehearsal)" for m, v in self.promoted
        ]
        return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def rehearse(
    settings: Settings,
    events: Path,
    labels: Path | None,
    record: dict[str, Any],
    target: str | None = None,
    registry_client: Any = None,
) -> Rehearsal:
    """Run ``record`` (as :func:`worker.service.rollout_record.new_record` makes it) over
    ``events`` with ``labels`` and return its moves."""
    store = open_store(settings.store)
    serving = build_serving(store, settings)
    layout = serving.model_set.layout
    if layout.is_multitask:
        raise ConfigError("--rollout", "a multi-task model's rollout is not rehearsed")
    block = layout.blocks[0]
    lines, truth = event_records(store, serving.model_set.names[0], events, labels, target)
    rehearsal_store = RehearsalStore(store, settings.kafka.group_id, record)
    now = [0.0]  # the gates' clock: the latest event time replayed
    rollout = Rollout(
        cast(ModelStore, rehearsal_store),  # the subset Rollout uses, writes kept in memory
        settings,
        Metrics(CollectorRegistry()),
        clock=lambda: now[0],
        interval_s=0.0,
    )
    pipeline = replay_pipeline(settings, serving, registry_client)
    moves: list[Move] = []
    n_labelled = 0
    size = settings.batch.max_events

    def step(after_events: int) -> None:
        """The arms for the next batch; a move made now was judged on ``after_events``."""
        seen = len(rehearsal_store.rollouts[-1].record["history"])
        pipeline.arms = rollout.between_batches(pipeline)
        if rollout.wait(BUILD_WAIT_S):  # a candidate version was loading: serve it now
            pipeline.arms = rollout.between_batches(pipeline)
        history = rehearsal_store.rollouts[-1].record["history"]
        moves.extend(Move(after_events, h) for h in history[seen:])

    try:
        for start in range(0, len(lines), size):
            step(start)
            result = pipeline.process(lines[start : start + size])
            times = result.ts[np.isfinite(result.ts) & (result.ts > 0)]
            if len(times):
                if not now[0]:  # the rollout starts with the first event's time
                    started(rehearsal_store.rollouts[0].record, float(times.min()))
                now[0] = max(now[0], float(times.max()))
            rollout.delivered(result)
            have = [
                i
                for i, d in enumerate(result.ids)
                if label_of(truth.get(d), block.name) is not None
            ]
            if have:
                y, ok = block.label_index(
                    [label_of(truth[result.ids[i]], block.name) for i in have]
                )
                rows = np.asarray(have, dtype=np.int64)[ok]
                n_labelled += len(rows)
                empty = np.zeros((0, len(rows), layout.n_outputs))
                ids = [result.ids[i] for i in rows]
                rollout.joined(Joined(ids, empty, np.zeros((0, len(rows)), bool), {}, y[ok]))
        step(len(lines))  # the last batch's labels judged
    finally:
        pipeline.close()
        if rollout.arms is not None:
            rollout.arms.close()
    final = rehearsal_store.rollouts[-1].record
    return Rehearsal(len(lines), n_labelled, final, moves, rehearsal_store.promoted)


def started(record: dict[str, Any], at: float) -> None:
    """Date the fresh ``record`` (its step and its start entry) ``at`` an event time."""
    record["step_started_at"] = at
    for entry in record["history"]:
        entry["at"] = at


def command(args: argparse.Namespace, settings: Settings) -> int:
    """``streamfuse replay --rollout``: the record ``rollout start`` would make from ``args``,
    rehearsed; prints the moves."""
    from worker.tools.rollout import candidate_record

    record = candidate_record(open_store(settings.store), args, settings, 0.0)
    rehearsal = rehearse(settings, args.events, args.labels, record, args.target)
    print(
        f"{rehearsal.n_events} events replayed, {rehearsal.n_labelled} labelled, "
        f"group {settings.kafka.group_id}\n"
    )
    print(rehearsal.table())
    return 0
