"""The ``streamfuse`` command line: one console script with subcommands.

Exit codes: 0 success, 2 bad usage or bad config (the message names the key), 1 other failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker import __version__
from worker.errors import ConfigError, WorkerError
from worker.tools import own_args

if TYPE_CHECKING:
    from worker.config import Settings

log = logging.getLogger("streamfuse.cli")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; no command's own module is imported until it runs."""
    parser = argparse.ArgumentParser(
        prog="streamfuse",
        description="Streaming inference: Kafka features in, fused ensemble predictions out.",
        epilog="Exit codes: 0 success, 2 bad usage or config (the key is named), 1 other failure.",
    )
    parser.add_argument("--version", action="version", version=f"streamfuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    config_help = "the YAML config (keys overridable by STREAMFUSE_<SECTION>__<KEY> variables)"

    p = sub.add_parser("run", help="run the worker")
    p.add_argument("--config", required=True, type=Path, help=config_help)

    p = sub.add_parser(
        "train", help="train base models on a demo data set or your own file, fit strategies"
    )
    own_args.add_train_sources(p)
    p.add_argument("--store", required=True, type=Path, help="the model store directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the models")
    p.add_argument(
        "--config-out",
        type=Path,
        default=None,
        help="where to write the config (default: streamfuse.yaml beside the store)",
    )
    p.add_argument(
        "--bootstrap", default="127.0.0.1:9092", help="kafka.bootstrap_servers of the config"
    )
    p.add_argument(
        "--drift",
        action="store_true",
        help="synthetic only: concept and population change half-way through the test stream",
    )
    p.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="sign what is published with this key (streamfuse store keygen); the config "
        "written names it",
    )

    p = sub.add_parser("produce", help="replay a data set's test split as events and labels")
    p.add_argument("--config", required=True, type=Path, help=config_help)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--dataset", help="send the store's test split (the data set it was trained on)"
    )
    source.add_argument("--data", type=Path, help="send a CSV or Parquet file's rows instead")
    p.add_argument(
        "--target", default=None, help="with --data: the label column (sent as label events)"
    )
    p.add_argument("--count", type=int, default=None, help="events to send (default: all)")
    p.add_argument("--rate", type=float, default=None, help="events per second (default: max)")
    p.add_argument(
        "--format",
        choices=("json", "avro", "protobuf", "json_schema"),
        default="json",
        help="json events, or Confluent-framed Avro, Protobuf or JSON Schema with the schema "
        "registered in schema_registry.url (default: json)",
    )
    p.add_argument(
        "--labels-delay", type=float, default=2.0, help="seconds from an event to its label"
    )
    p.add_argument("--id-prefix", default=None, help="event id prefix (default: the data set)")

    p = sub.add_parser("replay", help="backtest every configured strategy offline")
    p.add_argument("--config", required=True, type=Path, help=config_help)
    p.add_argument(
        "--events",
        required=True,
        type=Path,
        help="feature events: JSON lines, CSV or Parquet, or a topic's records as "
        "kcat -C -e -f '%%R%%s' writes them (Confluent-framed ones decoded through "
        "schema_registry.url)",
    )
    p.add_argument("--labels", type=Path, default=None, help="label events, JSON lines")
    p.add_argument("--target", default=None, help="with CSV or Parquet events: the label column")
    from worker.tools.rollout import add_rehearsal_arguments

    add_rehearsal_arguments(p)

    own_args.add_fit_arguments(
        sub.add_parser(
            "fit", help="fit every strategy on your held-out data for the store's promoted models"
        )
    )

    p = sub.add_parser("report", help="chart a running worker's accuracy and latency (HTML)")
    p.add_argument("--url", default="http://127.0.0.1:9464/metrics", help="the worker's /metrics")
    p.add_argument("--duration", type=float, default=60.0, help="seconds to sample")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    p.add_argument(
        "--out", type=Path, default=Path("streamfuse-report.html"), help="the HTML report"
    )
    p.add_argument("--svg-dir", type=Path, default=None, help="also write each chart as SVG")

    from worker.tools.bench import add_arguments as add_bench_arguments

    p = sub.add_parser(
        "bench",
        help="how fast the worker serves your models on your broker (one table)",
        description="Your config and store, in this process, on topics made for the run on "
        "your broker: a progress bar, then one table.",
    )
    add_bench_arguments(p)

    from worker.tools.rollout import add_arguments as add_rollout_arguments

    add_rollout_arguments(sub.add_parser("rollout", help="a candidate to a growing share of keys"))
    p = sub.add_parser("store", help="inspect and manage model versions")
    p.add_argument("--store", type=Path, default=None, help="store directory")
    p.add_argument("--config", type=Path, default=None, help="or the config naming it")
    p.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="signing key (default: the config's store.key_file); promote and rollback sign",
    )
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    q = ssub.add_parser("keygen", help="write a new signing key (keep it outside the store)")
    q.add_argument("path", type=Path, help="the key file to create (mode 0600; never overwritten)")
    q = _store_action(ssub, "list", help="models and their versions (* = promoted)")
    q = _store_action(ssub, "show", help="a version's manifest")
    q.add_argument("name", help="model name")
    q.add_argument("--version", type=int, default=None, help="default: the promoted one")
    q = _store_action(ssub, "promote", help="serve this version (workers hot-reload it)")
    q.add_argument("name", help="model name")
    q.add_argument("version", type=int, help="the version to promote")
    q = _store_action(
        ssub,
        "rollback",
        help="back to the previously promoted version (a new pointer: readers refuse an old "
        "one put back)",
    )
    q.add_argument("name", help="model name")
    _store_action(
        ssub,
        "sign",
        help="sign every unsigned manifest and pointer with --key-file (a store published "
        "before the key existed); each version's files are checked first",
    )
    q = _store_action(ssub, "strategy", help="the champion/challenger decision: show or revert it")
    q.add_argument("action", nargs="?", choices=("show", "revert"), default="show")
    q.add_argument("--record", default=None, help="decision name (default: from --config)")
    own_args.add_publish_arguments(
        _store_action(
            ssub,
            "publish",
            help="import a model file (skops, safetensors, XGBoost JSON/UBJ, LightGBM text, "
            "ONNX); never a pickle",
        )
    )
    return parser


def _store_action(ssub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A ``store`` action that also takes ``--store``, ``--config`` and ``--key-file`` after
    its name (``store publish ... --store DIR``, as ``fit`` and ``train`` take it)."""
    q: argparse.ArgumentParser = ssub.add_parser(name, help=help)
    # SUPPRESS: not given here, the value before the action stands.
    q.add_argument("--store", type=Path, default=argparse.SUPPRESS, help="store directory")
    q.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="or the config naming it")
    q.add_argument("--key-file", type=Path, default=argparse.SUPPRESS, help="signing key")
    return q


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from worker.logs import configure_logging

    configure_logging()
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"streamfuse: {exc}", file=sys.stderr)
        return 2
    except WorkerError as exc:
        print(f"streamfuse: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "train":
        return _train(args)
    if args.command == "produce":
        return _produce(args)
    if args.command == "replay":
        return _replay(args)
    if args.command == "store":
        return _store(args)
    if args.command == "fit":
        return _fit(args)
    if args.command == "report":
        return _report(args)
    if args.command == "rollout":
        from worker.tools import rollout

        return rollout.main(args)
    if args.command == "bench":
        from worker.tools import bench

        return bench.main(args)
    raise AssertionError(args.command)


def _settings(path: Path) -> Settings:
    from worker.config import load_settings

    return load_settings(path)


def _run(args: argparse.Namespace) -> int:
    import signal

    # SIGTERM or SIGINT while torch, scikit-learn and the models load: remembered, and the
    # worker stops cleanly (exit 0) as soon as it can, instead of dying mid-import.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: early.append(signum))
    logging.getLogger("streamfuse").info("starting with %s", args.config)

    from worker.logs import configure_logging
    from worker.service.process import serve

    settings = _settings(args.config)
    configure_logging(settings.logging.level, settings.logging.json_lines)
    return serve(settings, stopped_early=lambda: bool(early))


def _train(args: argparse.Namespace) -> int:
    from worker.tools.own_commands import run_train

    return run_train(args)


def _produce(args: argparse.Namespace) -> int:
    from worker.tools.produce import produce

    settings = _settings(args.config)
    n = produce(
        settings,
        count=args.count,
        rate=args.rate,
        labels_delay=args.labels_delay,
        prefix=args.id_prefix or args.dataset or args.data.stem,
        progress=sys.stderr.isatty(),
        data=args.data,
        target=args.target,
        dataset=args.dataset,
        format=args.format,
    )
    labelled = settings.topics.labels and (args.data is None or args.target is not None)
    labels = f" and their labels to {settings.topics.labels}" if labelled else ""
    print(f"produced {n} events to {settings.topics.input}{labels}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from worker.tools.replay import replay

    settings = _settings(args.config)
    if args.rollout:
        from worker.tools.rehearse import command

        return command(args, settings)
    report = replay(settings, args.events, args.labels, args.target)
    print(
        f"{report.n_events} events: {report.n_predicted} predicted, "
        f"{report.n_dead_lettered} dead-lettered, {report.n_labelled} labelled\n"
    )
    if report.rows:
        print(report.table())
    return 0


def _fit(args: argparse.Namespace) -> int:
    from worker.tools.own_commands import run_fit

    return run_fit(args)


def _report(args: argparse.Namespace) -> int:
    from worker.tools.report import collect, write_report

    samples = collect(args.url, args.duration, args.interval)
    path = write_report(samples, args.out, args.svg_dir)
    print(f"{len(samples)} samples from {args.url} charted in {path}")
    return 0


def _store(args: argparse.Namespace) -> int:  # noqa: C901 (one branch per store subcommand)
    from model_store import ModelStoreError

    if args.store_command == "keygen":
        from model_store import generate_key

        try:
            path = generate_key(args.path)
        except ModelStoreError as exc:
            print(f"streamfuse: {exc}", file=sys.stderr)
            return 1
        print(f"wrote a new signing key to {path}; set store.key_file to it")
        return 0
    from worker.config import StoreSettings
    from worker.inference.store import open_store

    if args.store is None and args.config is None:
        raise ConfigError("store", "give --store DIR or --config FILE")
    if args.store_command == "publish" and args.store is not None:
        args.store.mkdir(parents=True, exist_ok=True)
    if args.store is not None:
        settings = StoreSettings(path=args.store, key_file=args.key_file)
    else:
        settings = _settings(args.config).store
        if args.key_file is not None:
            settings = settings.model_copy(update={"key_file": args.key_file})
    store = open_store(settings)
    if args.store_command == "strategy":
        from worker.tools.decisions import strategy_command

        if args.record is None and args.config is None:
            raise ConfigError("--record", "give --record NAME or --config FILE")
        record = args.record or _settings(args.config).decision_name
        return strategy_command(store, record, args.action)
    if args.store_command == "publish":
        from worker.tools.publish import publish

        return publish(store, args)
    try:
        if args.store_command == "list":
            for name in store.models():
                try:
                    active = store.active_version(name)
                except ModelStoreError:
                    active = None
                versions = ", ".join(
                    f"{v}*" if v == active else str(v) for v in store.versions(name)
                )
                print(f"{name}: {versions}")
        elif args.store_command == "show":
            print(json.dumps(store.manifest(args.name, args.version), indent=2, default=str))
        elif args.store_command == "promote":
            store.promote(args.name, args.version)
            print(f"{args.name}: promoted v{args.version}")
        elif args.store_command == "rollback":
            version = store.rollback(args.name)
            print(f"{args.name}: rolled back to v{version}")
        elif args.store_command == "sign":
            if store.signing != "signed":
                raise ConfigError("--key-file", "store sign needs the key (or store.key_file)")
            signed = store.sign_unsigned()
            for signed_file in signed:
                print(f"signed {signed_file}")
            print(f"{len(signed)} files signed with key {store.key_id}")
    except ModelStoreError as exc:
        print(f"streamfuse: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
