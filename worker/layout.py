"""How the columns of a model output map to tasks, classes and values.

A single-task model set has one block covering every column. A multi-task model set concatenates
one block per task along the output axis, in the order of the manifest's ``tasks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Block", "OutputLayout"]


@dataclass(frozen=True)
class Block:
    name: str
    kind: str  # "classification" or "regression"
    start: int
    stop: int
    classes: tuple[Any, ...] | None = None

    @property
    def n_outputs(self) -> int:
        return self.stop - self.start

    def predictions(self, outputs: np.ndarray) -> list[Any]:
        """Per-event prediction from ``outputs`` of shape (n_events, n_total_outputs)."""
        cols = outputs[:, self.start : self.stop]
        if self.kind == "classification":
            assert self.classes is not None
            return np.asarray(self.classes, dtype=object)[cols.argmax(axis=1)].tolist()
        if self.n_outputs == 1:
            return cols[:, 0].tolist()
        return cols.tolist()

    def scores(self, outputs: np.ndarray) -> list[Any] | None:
        if self.kind != "classification":
            return None
        return outputs[:, self.start : self.stop].tolist()

    def label_index(self, labels: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Map raw labels to column indices (classification) or floats (regression).

        Returns ``(values, ok)``: ``ok`` is False where a label is unknown or not a number.
        """
        n = len(labels)
        ok = np.ones(n, dtype=bool)
        if self.kind == "classification":
            assert self.classes is not None
            lookup = {_norm(c): i for i, c in enumerate(self.classes)}
            out = np.zeros(n, dtype=np.int64)
            for i, label in enumerate(labels):
                j = _lookup(lookup, label)
                if j is None:
                    ok[i] = False
                else:
                    out[i] = j
            return out, ok
        vals = np.zeros(n, dtype=np.float64)
        for i, label in enumerate(labels):
            if isinstance(label, bool) or not isinstance(label, int | float):
                ok[i] = False
            else:
                vals[i] = float(label)
        ok &= np.isfinite(vals)
        return vals, ok


def _lookup(lookup: dict[Any, int], label: Any) -> int | None:
    if isinstance(label, list | dict):
        return None
    j = lookup.get(_norm(label))
    if j is None and isinstance(label, str):
        try:
            j = lookup.get(_norm(float(label)))
        except ValueError:
            return None
    return j


def _norm(value: Any) -> Any:
    # Labels arrive as JSON: 3, 3.0 and "3" name the same class when the classes are numbers.
    if isinstance(value, bool):
        return ("bool", value)  # True must not match class 1
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, np.generic):
        return _norm(value.item())
    return value


@dataclass(frozen=True)
class OutputLayout:
    task: str  # "classification", "regression" or "multitask"
    blocks: tuple[Block, ...]

    @property
    def n_outputs(self) -> int:
        return self.blocks[-1].stop

    @property
    def is_multitask(self) -> bool:
        return self.task == "multitask"

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], n_outputs: int) -> OutputLayout:
        task = manifest.get("task", "classification")
        if task == "multitask":
            blocks, start = [], 0
            for t in manifest.get("tasks") or []:
                stop = start + int(t["n_outputs"])
                classes = tuple(t["classes"]) if t.get("classes") is not None else None
                blocks.append(Block(t["name"], t["type"], start, stop, classes))
                start = stop
            return cls(task, tuple(blocks))
        classes = manifest.get("classes")
        if task == "classification":
            return cls(task, (Block("", task, 0, n_outputs, tuple(classes or range(n_outputs))),))
        return cls(task, (Block("", "regression", 0, n_outputs),))
