"""Type checks of the manifest fields a loader relies on, before any file is interpreted.

A manifest is JSON an attacker may have written: every field the loaders and
:class:`LoadedModel` read gets its type, range and consistency checked here, so a wrong type
is an :class:`IntegrityError` naming ``manifest.json`` instead of a ``TypeError`` three frames
into a loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._limits import StoreLimits
from ._manifest import MANIFEST_NAME, is_version
from .errors import IntegrityError

__all__ = [
    "check_model_fields",
    "check_strategy_fields",
    "classes_ok",
    "no_manifest_spec",
]

_OUTPUT_KIND = {"classification": "proba", "regression": "value", "multitask": "mixed"}
_MODEL_FIELDS = (
    "framework",
    "input_schema",
    "task",
    "classes",
    "tasks",
    "n_outputs",
    "output_kind",
)


def _count(value: Any, cap: int) -> bool:
    return type(value) is int and 1 <= value <= cap


def check_model_fields(manifest: Mapping[str, Any], limits: StoreLimits) -> dict[str, Any] | None:  # noqa: C901 (one check per field of an untrusted file, read top to bottom)
    """Check a model manifest's fields; return the spec its format validated (torch's
    architecture; None for the others).

    Raises
    ------
    IntegrityError
        Naming ``manifest.json`` and the field.
    """
    name, version = manifest["name"], manifest["version"]

    def refuse(problem: str) -> IntegrityError:
        return IntegrityError(name, version, MANIFEST_NAME, problem)

    missing = [key for key in _MODEL_FIELDS if key not in manifest]
    if missing:
        raise refuse(f"missing fields {missing}")
    from ._formats import FORMATS  # the formats check their own fields with this module

    framework, task = manifest["framework"], manifest["task"]
    fmt = FORMATS.get(framework) if isinstance(framework, str) else None
    if fmt is None:
        raise refuse(f"unknown framework {framework!r}")
    if task not in fmt.tasks:
        raise refuse(f"task {task!r} is not one of {fmt.tasks} for {framework}")
    if manifest["output_kind"] != _OUTPUT_KIND[task]:
        raise refuse(f"output_kind {manifest['output_kind']!r} does not fit task {task!r}")
    schema = manifest["input_schema"]
    if not isinstance(schema, dict) or not _count(schema.get("n_features"), limits.max_features):
        raise refuse("input_schema.n_features must be a positive integer within the cap")
    n_features = schema["n_features"]
    names = schema.get("feature_names")
    if names is not None and not (
        isinstance(names, list)
        and len(names) == n_features
        and all(isinstance(f, str) for f in names)
        and len(set(names)) == n_features
    ):
        raise refuse(f"input_schema.feature_names must be {n_features} unique strings or null")
    n_outputs = manifest["n_outputs"]
    if not _count(n_outputs, limits.max_features):
        raise refuse("n_outputs must be a positive integer within the cap")
    classes, tasks = manifest["classes"], manifest["tasks"]
    if task == "classification":
        if not classes_ok(classes, n_outputs):
            raise refuse(f"classes must be {n_outputs} unique JSON scalars")
    elif classes is not None:
        raise refuse(f"a {task} model has no classes")
    if task != "multitask" and tasks is not None:
        raise refuse("tasks is for multitask models only")
    return fmt.manifest_spec(manifest, limits)


def no_manifest_spec(manifest: Mapping[str, Any]) -> None:
    """A format without architecture specs: refuse a manifest that carries one."""
    if manifest.get("spec") is not None:
        raise IntegrityError(
            manifest["name"], manifest["version"], MANIFEST_NAME, "spec is for torch models only"
        )


def classes_ok(classes: Any, n: int) -> bool:
    """``classes`` are ``n`` unique JSON scalars."""
    return (
        isinstance(classes, list)
        and len(classes) == n
        and all(type(c) in (str, int, float, bool) for c in classes)
        and len({(type(c), c) for c in classes}) == n
    )


def check_strategy_fields(manifest: Mapping[str, Any], *, kind: str = "strategy") -> dict[str, int]:
    """``fitted_on`` of a strategy (or reference profile) manifest: model name -> version."""
    fitted_on = manifest.get("fitted_on", {})
    if not isinstance(fitted_on, dict) or not all(
        isinstance(k, str) and is_version(v) for k, v in fitted_on.items()
    ):
        raise IntegrityError(
            manifest["name"],
            manifest["version"],
            MANIFEST_NAME,
            "fitted_on must map model names to versions",
            kind=kind,
        )
    return dict(fitted_on)
