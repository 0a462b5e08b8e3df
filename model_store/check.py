"""Vet a model file before publishing it: ``python -m model_store.check FILE --framework F``.

Runs the checks :meth:`ModelStore.publish_file` and :meth:`ModelStore.load` run (the format's
parser and caps, the trusted types, the loader and a probe batch of zeros) on one file, in a
child process under the store's load limits (``max_load_bytes`` of address space,
``max_load_cpu_s`` of CPU, killed after ``max_load_wall_s``), and prints what it found: the
framework, task, classes, feature count, outputs, and the trees and nodes (XGBoost, LightGBM)
or operators (ONNX) of the file as the store would hand it to the library. Exit status 0 when
the store would accept the file, 2 with the reason when it would refuse it.

Nothing is written but a temporary store, removed at exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._formats import FORMATS
from ._limits import StoreLimits
from .errors import ModelStoreError

__all__ = ["check_file", "main"]

_MiB = 1 << 20
_NAME = "candidate"


def check_file(
    path: str | Path,
    framework: str,
    *,
    spec_path: str | Path | None = None,
    limits: StoreLimits | None = None,
) -> dict[str, Any]:
    """What the store finds in ``path``, checked in this process (no limits of its own).

    Raises
    ------
    ModelStoreError
        The store would refuse the file (the message says why).
    """
    from ._store import ModelStore

    limits = limits or StoreLimits()
    with tempfile.TemporaryDirectory(prefix="model-store-check-") as tmp:
        store = ModelStore(Path(tmp) / "store", limits=limits)
        store.publish_file(_NAME, path, framework=framework, spec_path=spec_path)
        model = store.load(_NAME)
        model.predict_outputs(np.zeros((8, model.n_features)))
        manifest = model.manifest
        stored = FORMATS[framework].filename  # beside it: published_outputs.npz
        data = (Path(tmp) / "store" / _NAME / str(model.version) / stored).read_bytes()
    report: dict[str, Any] = {
        "file": str(path),
        "framework": framework,
        "stored_as": stored,
        "bytes": Path(path).stat().st_size,
        "task": model.task,
        "classes": model.classes,
        "n_features": model.n_features,
        "feature_names": model.feature_names,
        "n_outputs": model.n_outputs,
        "estimator": manifest.get("estimator"),
    }
    report.update(FORMATS[framework].structure(data))
    return report


# -- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_store.check",
        description="Run the model store's publish and load checks on one file.",
    )
    parser.add_argument("file", type=Path)
    parser.add_argument("--framework", required=True, choices=tuple(FORMATS))
    parser.add_argument("--spec", type=Path, help="a torch model's JSON architecture spec")
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="NAME=N",
        help="a store limit other than its default (store.limits), e.g. max_trees=100000",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--in-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        limits = StoreLimits(**dict(_limit(item) for item in args.limit))
    except (TypeError, ValueError) as exc:
        parser.error(f"--limit: {exc}")
    if args.in_child:
        return _child(args, limits)
    outcome = _run_child(args, limits)
    if "refused" in outcome:
        print(f"refused: {args.file}: {outcome['refused']}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(outcome["report"], indent=2, default=str))
    else:
        for key, value in outcome["report"].items():
            if value is not None:
                print(f"{key}: {value}")
        print("the store would accept this file")
    return 0


def _limit(item: str) -> tuple[str, int]:
    key, sep, value = item.partition("=")
    if not sep or not value.strip().isdigit():
        raise ValueError(f"{item!r} is not NAME=N")
    return key.strip(), int(value)


def _run_child(args: argparse.Namespace, limits: StoreLimits) -> dict[str, Any]:
    """The check in a child under the load limits; its JSON outcome, or the limit it broke."""
    command = [sys.executable, "-m", "model_store.check", str(args.file), "--in-child"]
    command += ["--framework", args.framework]
    command += [] if args.spec is None else ["--spec", str(args.spec)]
    for f in dataclasses.fields(limits):
        command += ["--limit", f"{f.name}={getattr(limits, f.name)}"]
    try:
        proc = subprocess.run(  # noqa: S603 (this interpreter, fixed arguments; the file is data to the child)
            command, capture_output=True, text=True, timeout=limits.max_load_wall_s
        )
    except subprocess.TimeoutExpired:
        return {
            "refused": f"the check did not finish within {limits.max_load_wall_s} s "
            "(store.limits.max_load_wall_s)"
        }
    last = proc.stdout.strip().splitlines()[-1:] or [""]
    if proc.returncode in (0, 2) and last[0].startswith("{"):
        outcome: dict[str, Any] = json.loads(last[0])
        return outcome
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode)
        if sig == signal.SIGXCPU:
            why = f"it ran past the CPU limit of {limits.max_load_cpu_s} s (max_load_cpu_s)"
        else:
            why = f"the check died by {sig.name} (under the limits " + _limits_text(limits) + ")"
        return {"refused": why}
    tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
    return {"refused": f"the check exited with status {proc.returncode}: {tail[0][:300]}"}


def _limits_text(limits: StoreLimits) -> str:
    return f"{limits.max_load_bytes // _MiB} MiB of address space, {limits.max_load_cpu_s} s of CPU"


def _child(args: argparse.Namespace, limits: StoreLimits) -> int:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (limits.max_load_bytes, limits.max_load_bytes))
    cpu = limits.max_load_cpu_s
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    try:
        report = check_file(args.file, args.framework, spec_path=args.spec, limits=limits)
    except MemoryError:
        why = f"it ran out of memory under the limits {_limits_text(limits)} (max_load_bytes)"
        print(json.dumps({"refused": why}))
        return 2
    except ModelStoreError as exc:
        why = str(exc)
        if isinstance(exc.__cause__, MemoryError) or "Failed to allocate" in why:
            why += f" (under the limits {_limits_text(limits)}; store.limits.max_load_bytes)"
        print(json.dumps({"refused": why}))
        return 2
    except OSError as exc:
        print(json.dumps({"refused": f"cannot read it: {exc}"}))
        return 2
    print(json.dumps({"report": report}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
