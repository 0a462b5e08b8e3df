"""Turn a fitted model plus publish arguments into files and manifest fields.

Everything the worker relies on is checked here, once, at publish time: the input schema
agrees with the model, classes are the model's own, the output width is known, and the
serialised file will load under the store's trust rules.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._limits import StoreLimits
from ._sklearn_io import dump_sklearn
from .errors import PublishError

__all__ = ["describe_sklearn", "describe_torch", "jsonable_classes", "jsonable_scores"]

SKLEARN_FILE = "model.skops"
TORCH_FILE = "model.safetensors"
_OUTPUT_KIND = {"classification": "proba", "regression": "value", "multitask": "mixed"}


def jsonable_classes(name: str, classes: Sequence[Any]) -> list[Any]:
    """Class labels as JSON scalars (numpy scalars unwrapped); must be unique."""
    out = [c.item() if isinstance(c, np.generic) else c for c in classes]
    for c in out:
        if not isinstance(c, str | int | float | bool):
            raise PublishError(name, f"class label {c!r} is not a JSON scalar")
    if len(set(out)) != len(out):
        raise PublishError(name, f"class labels are not unique: {out}")
    return out


def jsonable_scores(name: str, scores: Mapping[str, Any] | None) -> dict[str, float]:
    """Held-out scores as ``{metric: float}``."""
    try:
        return {str(k): float(v) for k, v in (scores or {}).items()}
    except (TypeError, ValueError) as exc:
        raise PublishError(name, f"scores must map metric names to numbers: {exc}") from exc


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def name_difference(given: list[str], own: list[str]) -> str:
    """How the given feature names differ from the model's own: the names one side lacks,
    or (same names, another order) the first position where they differ; "" if equal."""
    given_set, own_set = set(given), set(own)
    missing = [n for n in own if n not in given_set]
    extra = [n for n in given if n not in own_set]
    parts = [f"missing {_listed(missing)}"] if missing else []
    parts += [f"not the model's {_listed(extra)}"] if extra else []
    if not parts:
        for i, (g, o) in enumerate(zip(given, own, strict=False)):
            if g != o:
                return f"the same names in another order: position {i} is {g!r}, the model's {o!r}"
        return ""
    return "; ".join(parts)


def _input_schema(
    name: str,
    given: Mapping[str, Any] | None,
    n_features: int | None,
    feature_names: list[str] | None,
) -> dict[str, Any]:
    """The manifest's ``input_schema`` from the given one and what the model says of itself
    (``n_features``, its own ``feature_names``); refusals say what differs in user words."""
    if given is not None:
        unknown = set(given) - {"n_features", "feature_names"}
        if unknown:
            raise PublishError(name, f"unknown input_schema keys {sorted(unknown)}")
        names = given.get("feature_names")
        if n_features is not None and given.get("n_features", n_features) != n_features:
            if isinstance(names, list | tuple):
                problem = f"the model takes {n_features} features, the feature names given "
                problem += f"(--feature-names) name {len(names)}"
                if feature_names is not None:
                    problem += f": {name_difference([str(n) for n in names], feature_names)}"
            else:
                problem = f"the model takes {n_features} features, {given['n_features']} "
                problem += "were declared (--features)"
            raise PublishError(name, problem)
        if names is not None and feature_names is not None:
            difference = name_difference([str(n) for n in names], [str(n) for n in feature_names])
            if difference:
                raise PublishError(
                    name,
                    f"the feature names given (--feature-names) are not the model's own "
                    f"{len(feature_names)}: {difference}",
                )
        n_features = given.get("n_features", n_features)
        feature_names = names if names is not None else feature_names
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise PublishError(name, f"input_schema needs a positive n_features, got {n_features!r}")
    if feature_names is not None:
        feature_names = [str(f) for f in feature_names]
        if len(feature_names) != n_features or len(set(feature_names)) != n_features:
            raise PublishError(
                name,
                f"the model takes {n_features} features: give {n_features} unique "
                f"feature_names, not {len(feature_names)} ({len(set(feature_names))} unique)",
            )
    return {"n_features": n_features, "feature_names": feature_names}


def _output_kind(name: str, task: str, given: str | None) -> str:
    expected = _OUTPUT_KIND[task]
    if given is not None and given != expected:
        raise PublishError(name, f"output_kind {given!r} does not fit task {task!r}")
    return expected


def describe_sklearn(
    name: str,
    model: Any,
    *,
    input_schema: Mapping[str, Any] | None,
    task: str | None,
    classes: Sequence[Any] | None,
    output_kind: str | None,
    tasks: Sequence[Mapping[str, Any]] | None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Files and manifest fields for a fitted scikit-learn estimator."""
    is_classifier = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    task = task or ("classification" if is_classifier else "regression")
    if task not in ("classification", "regression") or tasks is not None:
        raise PublishError(name, "scikit-learn models are single-task (use a torch multitask_mlp)")
    if task == "classification" and not is_classifier:
        raise PublishError(name, "task 'classification' needs predict_proba and classes_")
    names_in = getattr(model, "feature_names_in_", None)
    schema = _input_schema(
        name,
        input_schema,
        getattr(model, "n_features_in_", None),
        None if names_in is None else list(names_in),
    )
    probe = np.zeros((1, schema["n_features"]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. fitted with feature names, probed without
            out = model.predict_proba(probe) if is_classifier else model.predict(probe)
    except Exception as exc:
        raise PublishError(name, f"model fails on a probe batch of zeros: {exc}") from exc
    out = np.asarray(out)
    if task == "classification":
        model_classes = jsonable_classes(name, list(model.classes_))
        final = model_classes if classes is None else jsonable_classes(name, classes)
        if sorted(map(repr, final)) != sorted(map(repr, model_classes)):
            raise PublishError(name, f"classes {final} are not the model's {model_classes}")
        n_outputs = len(final)
    else:
        if classes is not None:
            raise PublishError(name, "a regression model has no classes")
        final = None
        n_outputs = 1 if out.ndim == 1 else int(out.shape[1])
    fields = {
        "framework": "sklearn",
        "input_schema": schema,
        "task": task,
        "classes": final,
        "tasks": None,
        "n_outputs": n_outputs,
        "output_kind": _output_kind(name, task, output_kind),
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "spec": None,
    }
    return {SKLEARN_FILE: dump_sklearn(model, name=name)}, fields


def _torch_tasks(
    name: str, spec_tasks: list[dict[str, Any]], given: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    if given is not None and len(given) != len(spec_tasks):
        raise PublishError(name, f"tasks has {len(given)} entries, the spec {len(spec_tasks)}")
    out = []
    for i, spec_task in enumerate(spec_tasks):
        task = dict(given[i]) if given is not None else {}
        for key in ("name", "type", "n_outputs"):
            if task.setdefault(key, spec_task[key]) != spec_task[key]:
                raise PublishError(
                    name, f"tasks[{i}].{key}={task[key]!r}, spec has {spec_task[key]!r}"
                )
        if set(task) - {"name", "type", "n_outputs", "classes"}:
            raise PublishError(name, f"tasks[{i}] has unknown keys")
        task["classes"] = _torch_classes(
            name, spec_task["type"], task.get("classes"), task["n_outputs"]
        )
        out.append(task)
    return out


def _torch_classes(name: str, task: str, classes: Sequence[Any] | None, n: int) -> list[Any] | None:
    if task == "regression":
        if classes is not None:
            raise PublishError(name, "a regression output has no classes")
        return None
    final = list(range(n)) if classes is None else jsonable_classes(name, classes)
    if len(final) != n:
        raise PublishError(name, f"{len(final)} classes for {n} outputs")
    return final


def describe_torch(
    name: str,
    model: Any,
    *,
    spec: Mapping[str, Any] | None,
    input_schema: Mapping[str, Any] | None,
    task: str | None,
    classes: Sequence[Any] | None,
    output_kind: str | None,
    tasks: Sequence[Mapping[str, Any]] | None,
    limits: StoreLimits | None = None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Files and manifest fields for a torch module built by :func:`build_torch_model`."""
    from torch import nn  # imported only to publish a torch model

    from ._torch_io import dump_torch
    from ._torch_nets import validate_spec

    if not isinstance(model, nn.Module):
        raise PublishError(name, f"framework 'torch' needs a torch.nn.Module, got {type(model)}")
    if spec is None:
        raise PublishError(name, "framework 'torch' needs the architecture spec")
    clean = validate_spec(spec, limits)
    schema = _input_schema(name, input_schema, clean["n_inputs"], None)
    if clean["arch"] == "mlp":
        spec_task = clean["task"]
        if task not in (None, spec_task) or tasks is not None:
            raise PublishError(name, f"task {task!r} does not match the spec's {spec_task!r}")
        task, final_tasks = spec_task, None
        final_classes = _torch_classes(name, spec_task, classes, clean["n_outputs"])
        n_outputs = clean["n_outputs"]
    else:
        if task not in (None, "multitask") or classes is not None:
            raise PublishError(name, "a multitask_mlp has task 'multitask' and per-task classes")
        task, final_classes = "multitask", None
        final_tasks = _torch_tasks(name, clean["tasks"], tasks)
        n_outputs = sum(t["n_outputs"] for t in final_tasks)
    fields = {
        "framework": "torch",
        "input_schema": schema,
        "task": task,
        "classes": final_classes,
        "tasks": final_tasks,
        "n_outputs": n_outputs,
        "output_kind": _output_kind(name, task, output_kind),
        "estimator": f"model_store.{clean['arch']}",
        "spec": clean,
    }
    return {TORCH_FILE: dump_torch(model, clean, name=name)}, fields
