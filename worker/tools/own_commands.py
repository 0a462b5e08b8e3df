"""``streamfuse train`` (demo data sets and ``--data``) and ``streamfuse fit``: arguments to
calls, reports to stdout."""

from __future__ import annotations

import argparse
import sys
import time

from worker.errors import ConfigError

__all__ = ["run_fit", "run_train"]


def models_arg(value: str | None) -> list[str] | None:
    return None if value is None else [m.strip() for m in value.split(",") if m.strip()]


def run_train(args: argparse.Namespace) -> int:
    from worker.tools.train import BASE_MODELS, DEFAULT_MODELS, dataset_from_file, train

    models = models_arg(args.models) or list(DEFAULT_MODELS)
    unknown = sorted(set(models) - set(BASE_MODELS))
    if unknown:
        raise ConfigError("--models", f"unknown {unknown}; choose from {', '.join(BASE_MODELS)}")
    if args.data is not None:
        if not args.target:
            raise ConfigError("--target", "--data needs --target COLUMN")
        if not (args.heldout_fraction > 0 and args.test_fraction > 0) or (
            args.heldout_fraction + args.test_fraction >= 1
        ):
            raise ConfigError(
                "--heldout-fraction", "fractions must be positive and sum to less than 1"
            )
    started = time.perf_counter()
    dataset = (
        args.dataset
        if args.data is None
        else dataset_from_file(
            args.data,
            args.target,
            task=args.task,
            seed=args.seed,
            heldout_fraction=args.heldout_fraction,
            test_fraction=args.test_fraction,
        )
    )
    name = args.dataset or args.data.name
    report = train(
        dataset,
        args.store,
        models=models,
        seed=args.seed,
        config_out=args.config_out,
        progress=sys.stderr.isatty(),
        bootstrap=args.bootstrap,
        drift=args.drift,
        key_file=args.key_file,
    )
    print(f"Held-out fit, test-split scores on {name} (seed {args.seed}):\n")
    print(report.table())
    print(f"\nconfig written to {report.config_path} ({time.perf_counter() - started:.1f}s)")
    return 0


def run_fit(args: argparse.Namespace) -> int:
    from worker.tools.fit import fit

    report = fit(
        args.store,
        args.heldout,
        args.target,
        models=models_arg(args.models),
        config_out=args.config_out,
        bootstrap=args.bootstrap,
        key_file=args.key_file,
    )
    print(
        f"Strategies fitted on {report.n_rows} held-out rows of {args.heldout} "
        "(scores on those same rows):\n"
    )
    print(report.table())
    print(f"\nconfig written to {report.config_path}")
    return 0
