"""The ``streamfuse`` command line: one console script with subcommands.

Exit codes: 0 success, 2 bad usage or bad config (the message names the key), 1 other failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from worker import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamfuse",
        description="Streaming inference: Kafka features in, fused ensemble predictions out.",
    )
    parser.add_argument("--version", action="version", version=f"streamfuse {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
