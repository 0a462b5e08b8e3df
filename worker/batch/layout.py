"""How the columns of a model output map to tasks, classes and values.

A single-task model set has one block covering every column. A multi-task model set concatenates
one block per task along the output axis, in the order of the manifest's ``tasks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
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
        values: list[Any]
        if self.kind == "classification":
            assert self.classes is not None
            values = np.asarray(self.classes, dtype=object)[cols.argmax(axis=1)].tolist()
        elif self.n_outputs == 1:
            values = cols[:, 0].tolist()
        else:
            values = cols.tolist()
        return values

    def scores(self, outputs: np.ndarray) -> list[Any] | None:
        if self.kind != "classification":
            return None
        scores: list[Any] = outputs[:, self.start : self.stop].tolist()
        return scores

    @cached_property
    def _class_lookup(self) -> dict[Any, int]:
        return {_norm(c): i for i, c in enumerate(self.classes or ())}

    def label_index(self, labels: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Map raw labels to column indices (classification) or floats (regression).

        Returns ``(values, ok)``: ``ok`` is False where a label is unknown or not a number.
        Labels that are all plain numbers (or all strings, for string classes) are mapped with
        one C-level ``map`` over a dict; anything else takes the per-label checks.
        """
        n = len(labels)
        types = set(map(type, labels))
        if self.kind == "classification":
            lookup = self._class_lookup
            # dict lookups equate 3 and 3.0, as _norm does; bools, numeric strings and
            # unhashable labels need the per-label path.
            if types <= _NUMBERS or (types == {str} and all(type(k) is str for k in lookup)):
                idx = np.fromiter(map(lookup.get, labels, repeat(-1)), dtype=np.int64, count=n)
                ok = idx >= 0
                return np.where(ok, idx, 0), ok
            ok = np.ones(n, dtype=bool)
            out = np.zeros(n, dtype=np.int64)
            for i, label in enumerate(labels):
                j = _lookup(lookup, label)
                if j is None:
                    ok[i] = False
                else:
                    out[i] = j
            return out, ok
        if types <= _NUMBERS:
            vals = np.asarray(labels, dtype=np.float64).reshape(n)
            return vals, np.isfinite(vals)
        ok = np.ones(n, dtype=bool)
        vals = np.zeros(n, dtype=np.float64)
        for i, label in enumerate(labels):
            if isinstance(label, bool) or not isinstance(label, int | float):
                ok[i] = False
            else:
                vals[i] = float(label)
        ok &= np.isfinite(vals)
        return vals, ok


_NUMBERS = frozenset({int, float})


def _lookup(lookup: dict[Any, int], label: Any) -> int | None:
    try:
        hash(label)
    except TypeError:  # a list or an object: never a class
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
