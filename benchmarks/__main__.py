"""``python -m benchmarks [options]`` runs the harness; ``python -m benchmarks COMMAND ...`` one
of the other benchmarks (:data:`COMMANDS`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from benchmarks.args import add_arguments

__all__ = ["COMMANDS", "build_parser", "main"]

#: Command: (module, what it measures). Each module has ``main(argv) -> int``.
COMMANDS = {
    "predict": ("benchmarks.predict", "predict and load cost per framework, no broker"),
    "drift": ("benchmarks.drift", "the drift monitor's cost (--worker: in the whole worker)"),
    "scale": ("benchmarks.scale", "N workers on one broker or a 3-node cluster, and takeover"),
    "combine": ("benchmarks.combine", "combine per strategy, no broker"),
    "swap": ("benchmarks.swap", "end-to-end p99 after a hot swap, warm-up on and off"),
}


def build_parser() -> argparse.ArgumentParser:
    """The harness's options; the other commands listed after them."""
    listed = "\n".join(f"  {name:<10}{what}" for name, (_, what) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="The worker side by side with the Kafka ceiling and a naive loop, on one\n"
        "real broker, with each guarantee and each Kafka library (benchmarks/README.md).",
        epilog=f"other benchmarks (python -m benchmarks COMMAND --help):\n{listed}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        command = importlib.import_module(COMMANDS[args[0]][0])
        return int(command.main(args[1:]))
    parsed = build_parser().parse_args(args)
    from benchmarks import harness
    from worker.logs import configure_logging

    configure_logging("WARNING")
    return harness.main(parsed)


if __name__ == "__main__":
    sys.exit(main())
