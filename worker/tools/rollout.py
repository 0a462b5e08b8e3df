"""``streamfuse rollout start|status|pause|resume|abort``: a candidate to a growing share of keys.

``start`` records a new rollout for the worker group of ``--config`` (its ``kafka.group_id``;
or ``--group``) in the store: a model version (``--model M --version V``, published and *not*
promoted, or every worker would hot-reload it at once), another strategy (``--strategy S``,
configured as a shadow) or both, its ``--steps`` (percent of keys) and gates. The workers
follow it within a second; ``status`` prints its steps and history with the gates' figures;
``pause``, ``resume`` and ``abort`` record the move, compare-and-set against the state read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "add_arguments",
    "add_candidate_arguments",
    "add_rehearsal_arguments",
    "candidate_record",
    "main",
    "status_table",
]

_MOVES = {"pause": "pause", "resume": "resume", "abort": "abort"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="the workers' config")
    p.add_argument("--store", type=Path, default=None, help="or the store directory")
    p.add_argument("--key-file", type=Path, default=None, help="signing key (with --store)")
    p.add_argument("--group", default=None, help="the group (default: kafka.group_id)")
    rsub = p.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    q = rsub.add_parser("start", help="start rolling a model version and/or strategy out")
    add_candidate_arguments(q)
    rsub.add_parser("status", help="the rollout's steps, state and history (a table)")
    for move in _MOVES:
        rsub.add_parser(move, help=f"{move} the rollout")


def add_rehearsal_arguments(p: argparse.ArgumentParser) -> None:
    """``replay --rollout`` and the candidate's arguments (:mod:`worker.tools.rehearse`)."""
    p.add_argument(
        "--rollout",
        action="store_true",
        help="rehearse a rollout (the candidate, steps and gates below, as rollout start takes "
        "them) over the events and labels: when each step advances or rolls back; the store is "
        "only read",
    )
    add_candidate_arguments(p)


def add_candidate_arguments(q: argparse.ArgumentParser) -> None:
    """The candidate, its steps and its gates (``rollout start``, ``replay --rollout``)."""
    q.add_argument("--model", default=None, help="the model whose version is the candidate")
    q.add_argument("--version", type=int, default=None, help="its candidate version")
    q.add_argument("--strategy", default=None, help="a configured strategy as the candidate")
    q.add_argument("--steps", default="1,5,25,50,100", help="percent of keys, step by step")
    q.add_argument("--min-labels", type=int, default=200, help="paired labels per step")
    q.add_argument("--min-duration", type=float, default=60.0, help="seconds per step at least")
    q.add_argument("--max-p99-ms", type=float, default=None, help="candidate predict p99 limit")
    q.add_argument("--max-error-rate", type=float, default=None, help="failed batches limit")
    q.add_argument("--alpha", type=float, default=0.05, help="level of the paired tests")
    q.add_argument("--test", choices=("mcnemar", "paired_loss"), default="mcnemar")
    q.add_argument(
        "--promote-if-better",
        action="store_true",
        help="reach the last step only when the candidate is significantly better",
    )


def main(args: argparse.Namespace) -> int:
    from model_store import ConflictError, ModelStoreError
    from worker.errors import ConfigError

    store, group, settings = _open(args)
    try:
        if args.rollout_command == "start":
            return _start(store, group, args, settings)
        current = store.load_rollout(group)
        if current is None:
            print(f"{group}: no rollout recorded")
            return 0 if args.rollout_command == "status" else 1
        if args.rollout_command == "status":
            print(status_table(current.record, current.version, group))
            return 0
        from worker.service.rollout_record import MoveError, moved, share_of

        try:
            record = moved(current.record, _MOVES[args.rollout_command], "cli", time.time())
        except MoveError as exc:
            raise ConfigError("rollout", str(exc)) from exc
        version = store.publish_rollout(group, record, expected=current.version)
        print(f"{group}: rollout v{version} {record['status']} at {share_of(record):g}% of keys")
        return 0
    except ConflictError:
        print("streamfuse: the rollout moved meanwhile; look again (status)", file=sys.stderr)
        return 1
    except ModelStoreError as exc:
        print(f"streamfuse: {exc}", file=sys.stderr)
        return 1


def _open(args: argparse.Namespace) -> tuple[Any, str, Any]:
    from worker.config import StoreSettings, load_settings
    from worker.errors import ConfigError
    from worker.inference.store import open_store

    if args.config is None and (args.store is None or args.group is None):
        raise ConfigError("rollout", "give --config FILE, or --store DIR and --group NAME")
    if args.config is not None:
        settings = load_settings(args.config)
        store_settings = settings.store
        if args.key_file is not None:
            store_settings = store_settings.model_copy(update={"key_file": args.key_file})
        group = args.group or settings.kafka.group_id
    else:
        settings = None
        store_settings = StoreSettings(path=args.store, key_file=args.key_file)
        group = args.group
    return open_store(store_settings), group, settings


def _start(store: Any, group: str, args: argparse.Namespace, settings: Any) -> int:
    from worker.errors import ConfigError

    record = candidate_record(store, args, settings, time.time())
    current = store.load_rollout(group)
    if current is not None and current.record["status"] in ("running", "paused"):
        raise ConfigError("rollout start", f"a rollout of {group} is {current.record['status']}")
    version = store.publish_rollout(
        group, record, expected=None if current is None else current.version
    )
    print(f"{group}: rollout v{version} started at {record['steps'][0]:g}% of keys")
    return 0


def candidate_record(store: Any, args: argparse.Namespace, settings: Any, at: float) -> Any:
    """A new rollout record from :func:`add_candidate_arguments`' ``args``, started ``at``;
    with the workers' ``settings``, a strategy candidate must be one they configure (the
    workers would roll an unknown one back at once)."""
    from worker.accuracy.gates import Gates
    from worker.errors import ConfigError
    from worker.service.rollout_record import new_record

    if args.model is None and args.strategy is None:
        raise ConfigError("rollout start", "give --model M --version V, --strategy S, or both")
    candidate: dict[str, Any] = {}
    if args.model is not None:
        if args.version is None:
            raise ConfigError("--version", "a model candidate needs its version")
        if args.version not in store.versions(args.model):
            raise ConfigError("--version", f"{args.model!r} has no version {args.version}")
        if store.active_version(args.model) == args.version:
            raise ConfigError(
                "--version",
                f"{args.model} v{args.version} is already promoted: every worker serves it",
            )
        candidate.update(model=args.model, version=args.version)
    if args.strategy is not None:
        if settings is not None:
            known = [settings.strategy.name, *(s.name for s in settings.shadow_strategies)]
            if args.strategy not in known:
                raise ConfigError(
                    "--strategy",
                    f"{args.strategy!r} is not configured (configured: {', '.join(known)})",
                )
        candidate["strategy"] = args.strategy
    try:
        steps = [float(s) for s in args.steps.split(",")]
        gates = Gates(
            min_labels=args.min_labels,
            min_duration_s=args.min_duration,
            max_p99_ms=args.max_p99_ms,
            max_error_rate=args.max_error_rate,
            alpha=args.alpha,
            test=args.test,
            promote_if_better=args.promote_if_better,
        )
    except ValueError as exc:
        raise ConfigError("rollout start", str(exc)) from exc
    return new_record(candidate, [int(s) if s.is_integer() else s for s in steps], gates, "cli", at)


def status_table(record: dict[str, Any], version: int, group: str) -> str:
    """The rollout as text: its candidate, each step's share and state, then its history."""
    from worker.service.rollout_record import share_of

    c = record["candidate"]
    what = " + ".join(
        ([f"{c['model']} v{c['version']}"] if c.get("model") else [])
        + ([f"strategy {c['strategy']}"] if c.get("strategy") else [])
    )
    lines = [
        f"rollout of {group} (v{version}): {what}; {record['status']} at "
        f"{share_of(record):g}% of keys",
        "gates: " + ", ".join(f"{k}={v}" for k, v in sorted(record["gates"].items())),
        "",
        f"{'step':>4}  {'share':>6}  state",
    ]
    for i, share in enumerate(record["steps"]):
        if i < record["step"] or record["status"] == "done":
            state = "passed"
        elif i == record["step"]:
            state = record["status"]
        else:
            state = "-"
        lines.append(f"{i:>4}  {share:>5g}%  {state}")
    lines += ["", f"{'when (UTC)':<19}  {'action':<9} {'step':>4} {'share':>6}  figures"]
    for h in record["history"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(h.get("at", 0))))
        figures = h.get("figures") or {}
        shown = " ".join(f"{k}={v}" for k, v in figures.items() if v is not None)
        why = f" ({h['why']})" if h.get("why") else ""
        lines.append(
            f"{when:<19}  {h['action']:<9} {h['step']:>4} {h['share']:>5g}%  {shown}{why}".rstrip()
        )
    return "\n".join(lines)
