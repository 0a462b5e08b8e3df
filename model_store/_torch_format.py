"""The torch format: safetensors weights plus the JSON architecture spec they fit.

The spec lives in the manifest and is validated before any weight is read
(:func:`model_store._torch_nets.validate_spec`); the weights must be exactly the tensors the
spec's network has (:mod:`model_store._torch_io`). torch is imported only when a torch model
is published or loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._fields import classes_ok
from ._import import read_regular
from ._json import parse_json
from ._limits import StoreLimits
from ._manifest import MANIFEST_NAME
from ._publish import Predictor, checked_input_schema, checked_output_kind, jsonable_classes
from ._refused import Refused
from .errors import IntegrityError, InvalidSpecError, PublishError

__all__ = ["FORMAT", "TORCH_FILE", "describe_torch", "read_torch"]

TORCH_FILE = "model.safetensors"


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
    schema = checked_input_schema(name, input_schema, clean["n_inputs"], None)
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
        "output_kind": checked_output_kind(name, task, output_kind),
        "estimator": f"model_store.{clean['arch']}",
        "spec": clean,
    }
    return {TORCH_FILE: dump_torch(model, clean, name=name)}, fields


def read_torch(
    data: bytes,
    spec_path: str | os.PathLike[str] | None,
    *,
    name: str,
    filename: str,
    limits: StoreLimits,
) -> tuple[Any, dict[str, Any]]:
    """The module of a user's safetensors weights and the spec at ``spec_path``, checked."""
    if spec_path is None:
        raise PublishError(name, "a torch model needs its architecture spec (--spec FILE.json)")
    raw = read_regular(Path(spec_path), limits, name)
    try:
        spec = parse_json(raw, max_bytes=limits.max_json_bytes, max_depth=limits.max_json_depth)
    except Refused as exc:
        raise PublishError(name, f"{spec_path}: {exc}") from exc
    if not isinstance(spec, dict):
        raise PublishError(name, f"{spec_path}: the spec must be a JSON object")
    from ._torch_io import load_torch
    from ._torch_nets import validate_spec

    clean = validate_spec(spec, limits)
    return load_torch(data, clean, name=name, version=0, filename=filename), clean


def manifest_spec(manifest: Mapping[str, Any], limits: StoreLimits) -> dict[str, Any]:  # noqa: C901 (one check per field of an untrusted file, read top to bottom)
    """The manifest's spec, validated and consistent with its other fields."""

    def refuse(problem: str) -> IntegrityError:
        return IntegrityError(manifest["name"], manifest["version"], MANIFEST_NAME, problem)

    n_features = manifest["input_schema"]["n_features"]
    task, tasks, n_outputs = manifest["task"], manifest["tasks"], manifest["n_outputs"]
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
            if not classes_ok(task_classes, expected["n_outputs"]):
                raise refuse(f"task {expected['name']!r}: classes must be unique JSON scalars")
        elif task_classes is not None:
            raise refuse(f"task {expected['name']!r}: a regression output has no classes")
    if sum(t["n_outputs"] for t in spec_tasks) != n_outputs:
        raise refuse("n_outputs is not the sum of the tasks' outputs")
    return spec


@dataclass(frozen=True)
class TorchFormat:
    """torch networks of the store's architectures (see the module docstring)."""

    name: str = "torch"
    filename: str = TORCH_FILE
    extensions: tuple[str, ...] = (".safetensors",)
    how_to_convert: str = (
        "safetensors.torch.save_file(model.state_dict(), 'model.safetensors') plus a "
        "JSON spec (--spec)"
    )
    libraries: tuple[str, ...] = ("torch", "safetensors")
    tasks: tuple[str, ...] = ("classification", "regression", "multitask")

    def describe(
        self,
        name: str,
        model: Any,
        *,
        spec: Mapping[str, Any] | None,
        limits: StoreLimits,
        source: str | None,
        describe_args: Mapping[str, Any],
    ) -> tuple[dict[str, bytes], dict[str, Any]]:
        return describe_torch(name, model, spec=spec, limits=limits, **describe_args)

    def manifest_spec(
        self, manifest: Mapping[str, Any], limits: StoreLimits
    ) -> dict[str, Any] | None:
        return manifest_spec(manifest, limits)

    def load(
        self,
        manifest: Mapping[str, Any],
        data: bytes,
        *,
        spec: Mapping[str, Any] | None,
        limits: StoreLimits,
        threads: int,
    ) -> tuple[Any, Predictor]:
        name, version = manifest["name"], manifest["version"]
        if spec is None:  # manifest_spec returns a spec for every torch manifest
            raise IntegrityError(name, version, MANIFEST_NAME, "torch model without a spec")
        from ._torch_io import load_torch, make_torch_predictor  # torch only when needed

        module = load_torch(data, spec, name=name, version=version, filename=self.filename)
        return module, make_torch_predictor(module, spec)

    def read_import(
        self,
        data: bytes,
        *,
        suffix: str,
        filename: str,
        name: str,
        limits: StoreLimits,
        spec_path: str | os.PathLike[str] | None,
    ) -> tuple[Any, dict[str, Any] | None]:
        return read_torch(data, spec_path, name=name, filename=filename, limits=limits)

    def structure(self, data: bytes) -> dict[str, Any]:
        return {}


FORMAT = TorchFormat()
