"""``streamfuse store publish``: import a model file the user trained elsewhere.

The store does the work (:meth:`model_store.ModelStore.publish_file`: format checks, tree
checks, a probe batch of the declared width, never a pickle); this turns the command line
into its arguments and its refusals into exit 2 with the file named. ``--reference`` also
stores the features of a sample of training rows as the drift reference profile. With a Schema
Registry (``--schema-registry``, or the ``--config``'s ``schema_registry.url``), the
``--feature-names`` are first checked against the input subject's latest schema, as the
worker checks them at start-up (:func:`worker.schemas.check_subject`).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from model_store import ModelStore, ModelStoreError
from worker.config import load_settings
from worker.config._registry import PIP_LINE
from worker.errors import ConfigError

__all__ = ["check_feature_names", "parse_classes", "publish", "read_feature_names"]

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


def check_feature_names(names: list[str], args: argparse.Namespace, client: Any = None) -> int:
    """0 when ``names`` may be published: every one resolves to a numeric field of the input
    subject's latest schema (renamed by the config's ``input.fields``), or no registry is
    given, or the subject does not exist yet, or the registry does not answer (the worker
    then checks records one by one); else 2, the field and the subject named. ``client``: a
    registry client to use instead of one built from the arguments."""
    from worker.config import SchemaRegistrySettings

    config = getattr(args, "config", None)
    settings = None if config is None else load_settings(config)
    registry = settings.schema_registry if settings is not None else SchemaRegistrySettings()
    url = getattr(args, "schema_registry", None) or registry.url
    subject = getattr(args, "subject", None)
    if url is None and client is None:
        if subject is not None:
            print("streamfuse: --subject needs --schema-registry URL", file=sys.stderr)
            return 2
        return 0
    if subject is None:
        if settings is None:
            print(
                "streamfuse: --schema-registry needs --subject NAME, or --config naming the "
                "input topic (its subject is <topic>-value)",
                file=sys.stderr,
            )
            return 2
        subject = f"{settings.topics.input}-value"
    if client is None:
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError:
            print(f"streamfuse: --schema-registry: {PIP_LINE}", file=sys.stderr)
            return 2
        client = SchemaRegistryClient(registry.model_copy(update={"url": url}).client_config())
    from worker.batch.decode import Schema
    from worker.batch.framed import FieldMap
    from worker.schemas.startup import check_subject

    schema = Schema(len(names), tuple(names))
    if settings is not None:
        i = settings.input
        fields = FieldMap.for_schema(schema, i.fields, i.id_field, i.ts_field)
    else:
        fields = FieldMap.for_schema(schema, {}, "id", None)
    try:
        checked = check_subject(client, subject, fields)
    except ConfigError as exc:
        print(f"streamfuse: --feature-names {args.feature_names}: {exc.problem}", file=sys.stderr)
        return 2
    if checked is None:
        print(
            f"--feature-names not checked: no subject {subject} in the registry, or it did "
            "not answer",
            file=sys.stderr,
        )
    else:
        print(f"--feature-names checked against {checked}: every feature is a number there")
    return 0


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
    if args.feature_names is not None:
        code = check_feature_names(names, args)
        if code:
            return code
    elif getattr(args, "schema_registry", None) or getattr(args, "subject", None):
        print("streamfuse: --schema-registry checks --feature-names: give them", file=sys.stderr)
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
