"""``streamfuse store publish``: import a model file the user trained elsewhere.

The store does the work (:meth:`model_store.ModelStore.publish_file`: format checks, tree
checks, a probe batch of the declared width, never a pickle); this turns the command line
into its arguments and its refusals into exit 2 with the file named. ``--reference`` also
stores the features of a sample of training rows as the drift reference profile.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from model_store import ModelStore, ModelStoreError

__all__ = ["parse_classes", "publish", "read_feature_names"]

_INT = re.compile(r"-?\d+")


def parse_classes(text: str) -> list[Any]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; labels that are not all integers stay strings."""
    labels = [c.strip() for c in text.split(",") if c.strip()]
    if labels and all(_INT.fullmatch(c) for c in labels):
        return [int(c) for c in labels]
    return labels


def read_feature_names(path: Path) -> list[str]:
    """One name per line, or one comma-separated line."""
    text = path.read_text(encoding="utf-8-sig")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and "," in lines[0]:
        lines = [n.strip() for n in lines[0].split(",") if n.strip()]
    return lines


def publish(store: ModelStore, args: argparse.Namespace) -> int:
    """Run ``store publish``; 0 on success, 2 when the file or the arguments are refused."""
    schema: dict[str, Any] | None = None
    try:
        if args.feature_names is not None:
            names = read_feature_names(args.feature_names)
            schema = {"n_features": len(names), "feature_names": names}
        elif args.features is not None:
            schema = {"n_features": args.features}
    except OSError as exc:
        print(f"streamfuse: --feature-names {args.feature_names}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        version = store.publish_file(
            args.name,
            args.file,
            framework=args.framework,
            spec_path=args.spec,
            input_schema=schema,
            task=args.task,
            classes=None if args.classes is None else parse_classes(args.classes),
            promote=not args.no_promote,
        )
    except ModelStoreError as exc:
        print(f"streamfuse: {args.file}: {exc}", file=sys.stderr)
        return 2
    manifest = store.manifest(args.name, version)
    width = manifest["input_schema"]["n_features"]
    named = " (named)" if manifest["input_schema"]["feature_names"] else ""
    promoted = "promoted" if not args.no_promote else "not promoted"
    print(
        f"{args.name}: published v{version} from {args.file} ({args.framework} "
        f"{manifest['task']}, {width} features{named}, {manifest['n_outputs']} outputs; "
        f"{promoted})"
    )
    if getattr(args, "reference", None) is not None:
        return publish_feature_reference(store, args.reference, manifest["input_schema"])
    return 0


def publish_feature_reference(store: ModelStore, path: Path, schema: dict[str, Any]) -> int:
    """Store the features of the rows in ``path`` as the drift reference profile (its
    outputs' part is made by the worker from the held-out set, or by ``streamfuse fit``)."""
    from worker.drift import PROFILE_NAME, feature_reference, profile_arrays
    from worker.tools.tabular import feature_columns, read_table

    table = read_table(path)  # a DataFileError names the file: exit 2
    cols = feature_columns(table, [], schema["feature_names"], schema["n_features"], others=True)
    X = np.column_stack([table.numeric(c) for c in cols])
    meta, arrays = profile_arrays(
        feature_reference(X), [], schema["feature_names"], {"features": len(X)}, "reference"
    )
    version = store.publish_profile(PROFILE_NAME, meta, arrays, {})
    print(f"drift reference: profile v{version} from {len(X)} rows of {path}")
    return 0
