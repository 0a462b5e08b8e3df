"""The command line of ``train --data``, ``fit`` and ``store publish`` (parsing only: nothing
heavy is imported here, so ``streamfuse --help`` stays fast)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

__all__ = ["add_fit_arguments", "add_publish_arguments", "add_train_sources"]


def add_train_sources(p: argparse.ArgumentParser) -> None:
    """``train``'s data: a demo ``--dataset`` or the user's ``--data FILE --target COLUMN``."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--dataset",
        choices=["digits", "breast_cancer", "wine", "diabetes", "synthetic"],
        help="a data set that ships with scikit-learn, or a seeded synthetic one",
    )
    source.add_argument(
        "--data", type=Path, help="your own CSV or Parquet file (a header row names the columns)"
    )
    p.add_argument("--target", default=None, help="with --data: the column to predict")
    p.add_argument(
        "--task",
        choices=["classification", "regression"],
        default=None,
        help="with --data (default: classification for text or up to 20 integer values)",
    )
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated base models from rf,hgb,linear,mlp,xgboost,lightgbm "
        "(default: rf,hgb,linear,mlp)",
    )
    p.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.2,
        help="with --data: share of rows the strategies are fitted on",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="with --data: share of rows scored (and replayed by produce)",
    )


def add_fit_arguments(p: argparse.ArgumentParser) -> None:
    """``fit --store DIR --heldout FILE --target COLUMN ...``"""
    p.add_argument("--store", required=True, type=Path, help="the model store directory")
    p.add_argument(
        "--heldout",
        required=True,
        type=Path,
        help="CSV or Parquet: the models' feature columns (matched by name) and the target",
    )
    p.add_argument("--target", required=True, help="the target column of --heldout")
    p.add_argument(
        "--models", default=None, help="comma-separated model names (default: every model)"
    )
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
        "--key-file", type=Path, default=None, help="sign what is published with this key"
    )


def add_publish_arguments(q: argparse.ArgumentParser) -> None:
    """``store publish NAME FILE --framework F ...``"""
    q.add_argument("name", help="model name (letters, digits, '_.-')")
    q.add_argument("file", type=Path, help="the model file")
    q.add_argument(
        "--framework",
        required=True,
        choices=_Frameworks(),
        metavar="FRAMEWORK",
        help="the model's framework and the endings of its files: %(choices)s",
    )
    q.add_argument(
        "--task",
        choices=["classification", "regression"],
        default=None,
        help="default: from the model (its objective, predict_proba, or ONNX outputs)",
    )
    q.add_argument(
        "--classes",
        default=None,
        help="comma-separated class labels in output order (default: the model's, or 0..k-1)",
    )
    width = q.add_mutually_exclusive_group()
    width.add_argument("--features", type=int, default=None, help="the number of input features")
    width.add_argument(
        "--feature-names",
        type=Path,
        default=None,
        help="a file of feature names, one per line (or one comma-separated line)",
    )
    q.add_argument(
        "--schema-registry",
        default=None,
        metavar="URL",
        help="check --feature-names against the input subject's latest schema in this registry "
        "first (default: the --config's schema_registry.url), as the worker does at start-up",
    )
    q.add_argument(
        "--subject",
        default=None,
        help="the subject to check (default: <the --config's topics.input>-value)",
    )
    q.add_argument("--spec", type=Path, default=None, help="torch: the JSON architecture spec")
    q.add_argument("--no-promote", action="store_true", help="publish without serving it yet")
    q.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="CSV or Parquet rows of the features the model learnt from: stored as the drift "
        "reference (other columns are left out when the features are named)",
    )


class _Framework(str):
    """A framework's name (what ``--framework`` takes); shown with its files' endings."""

    def __str__(self) -> str:
        from model_store import FILE_ENDINGS

        return f"{self!r} ({' or '.join(FILE_ENDINGS[self])})"


class _Frameworks:
    """The store's frameworks, asked of its registry only when ``store publish`` checks or
    shows them: importing the store to build the parser would cost every command its import."""

    def __iter__(self) -> Iterator[_Framework]:
        from model_store import FRAMEWORKS

        return iter([_Framework(name) for name in FRAMEWORKS])

    def __contains__(self, value: object) -> bool:
        return value in list(self)
