"""The harness's options (``python -m benchmarks``), kept apart from it so that ``--help`` stays
fast (the harness imports torch, scikit-learn and kafka-python)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a short run (3,000 events)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--bootstrap", default=None, help="a running broker (default: dev/kafka)")
    parser.add_argument(
        "--kafka-port", type=int, default=39092, help="port for dev/kafka without --bootstrap"
    )
    parser.add_argument("--events", type=int, default=None, help="events per saturation run")
    parser.add_argument("--naive-events", type=int, default=None)
    parser.add_argument("--latency-seconds", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the models")
    parser.add_argument(
        "--models",
        default=None,
        help="the ensemble, comma-separated from rf,hgb,mlp,xgboost,lightgbm (default rf,hgb,mlp)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the store, configs and worker logs here"
    )
