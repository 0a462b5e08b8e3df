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
from .errors import IntegrityError, InvalidSpecError

__all__ = ["check_model_fields", "check_strategy_fields"]

_TASKS = {
    "sklearn": ("classification", "regression"),
    "torch": ("classification", "regression", "multitask"),
    "xgboost": ("classification", "regression"),
    "lightgbm": ("classification", "regression"),
    "onnx": ("classification", "regression"),
}
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


def _classes_ok(classes: Any, n: int) -> bool:
    return (
        isinstance(classes, list)
        and len(classes) == n
        and all(type(c) in (str, int, float, bool) for c in classes)
        and len({(type(c), c) for c in classes}) == n
    )


def check_model_fields(manifest: Mapping[str, Any], limits: StoreLimits) -> dict[str, Any] | None:
    """Check a model manifest's fields; return the validated torch spec (None otherwise).

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
    framework, task = manifest["framework"], manifest["task"]
    if framework not in _TASKS:
        raise refuse(f"unknown framework {framework!r}")
    if task not in _TASKS[framework]:
        raise refuse(f"task {task!r} is not one of {_TASKS[framework]} for {framework}")
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
        if not _classes_ok(classes, n_outputs):
            raise refuse(f"classes must be {n_outputs} unique JSON scalars")
    elif classes is not None:
        raise refuse(f"a {task} model has no classes")
    if task != "multitask" and tasks is not None:
        raise refuse("tasks is for multitask models only")
    if framework != "torch":
        if manifest.get("spec") is not None:
            raise refuse("spec is for torch models only")
        return None
    try:
        from ._torch_nets import validate_spec  # torch only for torch models

        spec = validate_spec(manifest.get("spec"), limits)  # type: ignore[arg-type]
    except InvalidSpecError as exc:
        raise refuse(str(exc)) from exc
    if spec["n_inputs"] != n_features:
        raise refuse(f"spec n_inputs {spec['n_inputs']} but input_schema says {n_features}")
    if spec["arch"] == "mlp":
        if (spec["task"], spec["n_outputs"]) != (task, n_outputs):
            raise refuse("task and n_outputs do not match the spec")
        return spec
    if task != "multitask":
        raise refuse("a multitask_mlp has task 'multitask'")
    spec_tasks = spec["tasks"]
    if not isinstance(tasks, list) or len(tasks) != len(spec_tasks):
        raise refuse(f"tasks must list the spec's {len(spec_tasks)} tasks")
    for given, expected in zip(tasks, spec_tasks, strict=True):
        if not isinstance(given, dict) or any(
            given.get(k) != expected[k] for k in ("name", "type", "n_outputs")
        ):
            raise refuse(f"tasks entry {given!r} does not match the spec's {expected!r}")
        task_classes = given.get("classes")
        if expected["type"] == "classification":
            if not _classes_ok(task_classes, expected["n_outputs"]):
                raise refuse(f"task {expected['name']!r}: classes must be unique JSON scalars")
        elif task_classes is not None:
            raise refuse(f"task {expected['name']!r}: a regression output has no classes")
    if sum(t["n_outputs"] for t in spec_tasks) != n_outputs:
        raise refuse("n_outputs is not the sum of the tasks' outputs")
    return spec


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
