"""Torch architectures the store can rebuild from a JSON spec.

Only weights are stored (safetensors); the module is rebuilt from the ``spec`` in the
manifest, so loading never runs code shipped with the model. Training code calls
:func:`build_torch_model` to get the same architecture, trains it, and publishes it with
the same spec.

Specs
-----
``{"arch": "mlp", "n_inputs": int, "hidden": [int, ...], "n_outputs": int,
"task": "classification" | "regression"}``
    Fully connected ReLU network; outputs logits (classification) or values.
``{"arch": "multitask_mlp", "n_inputs": int, "trunk": [int, ...],
"tasks": [{"name": str, "type": "classification" | "regression", "n_outputs": int}, ...]}``
    Shared ReLU trunk, one linear head per task; ``forward`` returns ``{task name: tensor}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ._limits import StoreLimits
from .errors import InvalidSpecError

__all__ = [
    "MLP",
    "TASK_TYPES",
    "MultiTaskMLP",
    "build_clean",
    "build_torch_model",
    "expected_shapes",
    "validate_spec",
]

TASK_TYPES = ("classification", "regression")
_KEYS = {
    "mlp": {"arch", "n_inputs", "hidden", "n_outputs", "task"},
    "multitask_mlp": {"arch", "n_inputs", "trunk", "tasks"},
}
_TASK_KEYS = {"name", "type", "n_outputs", "classes"}
_TASK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: Names a ModuleDict already has as attributes (``forward``, ``keys``, ``training``, ...):
#: a head under one of them cannot be registered.
_RESERVED_TASK_NAMES = frozenset(dir(nn.ModuleDict()))
_DEFAULT_LIMITS = StoreLimits()


def _layers(n_inputs: int, widths: Sequence[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(n_inputs, width), nn.ReLU()]
        n_inputs = width
    return layers


class MLP(nn.Module):
    """ReLU multilayer perceptron: ``(n_events, n_inputs) -> (n_events, n_outputs)``."""

    def __init__(self, n_inputs: int, hidden: Sequence[int], n_outputs: int) -> None:
        super().__init__()
        last = hidden[-1] if hidden else n_inputs
        self.net = nn.Sequential(*_layers(n_inputs, hidden), nn.Linear(last, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class MultiTaskMLP(nn.Module):
    """Shared trunk with one head per task; ``forward`` returns ``{task: (n_events, n_out)}``."""

    def __init__(self, n_inputs: int, trunk: Sequence[int], tasks: Sequence[tuple[str, int]]):
        super().__init__()
        self.trunk = nn.Sequential(*_layers(n_inputs, trunk))
        last = trunk[-1] if trunk else n_inputs
        self.task_names = [task_name for task_name, _ in tasks]
        self.heads = nn.ModuleDict({task_name: nn.Linear(last, n) for task_name, n in tasks})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.trunk(x)
        return {task_name: self.heads[task_name](shared) for task_name in self.task_names}


def _positive_int(spec: Mapping[str, Any], key: str, cap: int) -> int:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSpecError(key, f"must be a positive integer, got {value!r}")
    if value > cap:
        raise InvalidSpecError(key, f"{value} is over the cap of {cap}")
    return value


def _widths(spec: Mapping[str, Any], key: str, cap: int) -> list[int]:
    value = spec.get(key)
    if not isinstance(value, list) or not all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in value
    ):
        raise InvalidSpecError(key, f"must be a list of positive integers, got {value!r}")
    if len(value) > 64 or any(w > cap for w in value):
        raise InvalidSpecError(key, f"at most 64 layers of at most {cap} units, got {value!r}")
    return list(value)


def expected_shapes(spec: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of the module :func:`build_torch_model` builds from a clean spec.

    Computed without building anything, so weights can be compared with the spec before a
    single parameter is allocated.
    """
    trunk_key, prefix = ("hidden", "net") if spec["arch"] == "mlp" else ("trunk", "trunk")
    shapes: dict[str, tuple[int, ...]] = {}
    width = spec["n_inputs"]
    for i, out in enumerate(spec[trunk_key]):
        shapes[f"{prefix}.{2 * i}.weight"] = (out, width)
        shapes[f"{prefix}.{2 * i}.bias"] = (out,)
        width = out
    if spec["arch"] == "mlp":
        last = 2 * len(spec["hidden"])
        shapes[f"net.{last}.weight"] = (spec["n_outputs"], width)
        shapes[f"net.{last}.bias"] = (spec["n_outputs"],)
    else:
        for task in spec["tasks"]:
            shapes[f"heads.{task['name']}.weight"] = (task["n_outputs"], width)
            shapes[f"heads.{task['name']}.bias"] = (task["n_outputs"],)
    return shapes


def validate_spec(spec: Mapping[str, Any], limits: StoreLimits | None = None) -> dict[str, Any]:
    """Check a spec and return a plain-JSON copy of it.

    ``limits`` caps widths (``max_torch_width``), the task count (``max_tasks``) and the
    parameter count (``max_torch_params``).

    Raises
    ------
    InvalidSpecError
        Unknown architecture, missing or unknown keys, bad values, or over a cap.
    """
    limits = limits or _DEFAULT_LIMITS
    clean = _validate_spec(spec, limits)
    n_params = sum(_product(shape) for shape in expected_shapes(clean).values())
    if n_params > limits.max_torch_params:
        raise InvalidSpecError(
            "arch", f"{n_params} parameters, over the cap of {limits.max_torch_params}"
        )
    return clean


def _product(shape: tuple[int, ...]) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


def _validate_spec(spec: Mapping[str, Any], limits: StoreLimits) -> dict[str, Any]:  # noqa: C901 (one check per field of an untrusted file, read top to bottom)
    cap = limits.max_torch_width
    if not isinstance(spec, Mapping):
        raise InvalidSpecError("arch", f"spec must be a mapping, got {type(spec).__name__}")
    arch = spec.get("arch")
    if arch not in _KEYS:
        raise InvalidSpecError("arch", f"must be one of {sorted(_KEYS)}, got {arch!r}")
    unknown = set(spec) - _KEYS[arch]
    if unknown:
        raise InvalidSpecError(sorted(unknown)[0], f"unknown key for arch {arch!r}")
    if arch == "mlp":
        if spec.get("task") not in TASK_TYPES:
            raise InvalidSpecError("task", f"must be one of {TASK_TYPES}, got {spec.get('task')!r}")
        return {
            "arch": "mlp",
            "n_inputs": _positive_int(spec, "n_inputs", limits.max_features),
            "hidden": _widths(spec, "hidden", cap),
            "n_outputs": _positive_int(spec, "n_outputs", cap),
            "task": spec["task"],
        }
    tasks = spec.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise InvalidSpecError("tasks", "must be a non-empty list of task mappings")
    if len(tasks) > limits.max_tasks:
        raise InvalidSpecError("tasks", f"{len(tasks)} tasks, over the cap of {limits.max_tasks}")
    clean_tasks = []
    for task in tasks:
        if not isinstance(task, Mapping) or set(task) - _TASK_KEYS:
            raise InvalidSpecError("tasks", f"each task needs name, type, n_outputs: {task!r}")
        task_name = task.get("name")
        if not isinstance(task_name, str) or not _TASK_NAME.fullmatch(task_name):
            raise InvalidSpecError(
                "tasks", f"task name must be a letter then letters, digits, '_', got {task_name!r}"
            )
        if task_name in _RESERVED_TASK_NAMES:
            raise InvalidSpecError(
                "tasks", f"task name {task_name!r} is a torch ModuleDict attribute"
            )
        if task.get("type") not in TASK_TYPES:
            raise InvalidSpecError("tasks", f"task {task_name!r}: type must be one of {TASK_TYPES}")
        n_outputs = _positive_int(task, "n_outputs", cap)
        clean_tasks.append({"name": task_name, "type": task["type"], "n_outputs": n_outputs})
    names = [t["name"] for t in clean_tasks]
    if len(set(names)) != len(names):
        raise InvalidSpecError("tasks", f"task names must be unique, got {names}")
    return {
        "arch": "multitask_mlp",
        "n_inputs": _positive_int(spec, "n_inputs", limits.max_features),
        "trunk": _widths(spec, "trunk", cap),
        "tasks": clean_tasks,
    }


def build_torch_model(spec: Mapping[str, Any]) -> nn.Module:
    """Build the (untrained) torch module described by ``spec``.

    Parameters
    ----------
    spec : mapping
        See the module docstring for the two architectures.

    Returns
    -------
    torch.nn.Module
        ``MLP`` or ``MultiTaskMLP`` with float32 parameters.
    """
    return build_clean(validate_spec(spec))


def build_clean(clean: Mapping[str, Any]) -> nn.Module:
    """:func:`build_torch_model` for a spec :func:`validate_spec` already returned."""
    if clean["arch"] == "mlp":
        return MLP(clean["n_inputs"], clean["hidden"], clean["n_outputs"])
    return MultiTaskMLP(
        clean["n_inputs"], clean["trunk"], [(t["name"], t["n_outputs"]) for t in clean["tasks"]]
    )
