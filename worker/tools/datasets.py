"""Demo and test data sets: the ones that ship with scikit-learn, and a seeded synthetic one.

Every data set is split the same way for a given seed: train (60%) for the base models,
held-out (20%) for fitting the strategies, test (20%) for scoring and for ``streamfuse produce``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split

__all__ = ["DATASETS", "Dataset", "TaskSpec", "load_dataset", "split_indices"]

DATASETS = ("digits", "breast_cancer", "wine", "diabetes", "synthetic")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # classification or regression
    classes: tuple[Any, ...] | None = None


@dataclass
class Dataset:
    """``y`` is (n,) for the main task; ``extra`` holds further tasks' targets, (n,) each."""

    name: str
    X: np.ndarray
    y: np.ndarray
    task: TaskSpec
    extra: dict[str, tuple[TaskSpec, np.ndarray]] = field(default_factory=dict)
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    feature_names: list[str] | None = None
    drift_start: int | None = None  # the first row of a drifting stream's new world

    @property
    def tasks(self) -> list[TaskSpec]:
        return [self.task] + [spec for spec, _ in self.extra.values()]

    def targets(self) -> np.ndarray:
        """(n, n_tasks): the main target (a class's index for classification) then each
        extra one."""
        main = self.y
        if self.task.kind == "classification" and self.task.classes is not None:
            main = np.searchsorted(np.asarray(self.task.classes), self.y)
        cols = [main.astype(np.float64)] + [t.astype(np.float64) for _, t in self.extra.values()]
        return np.column_stack(cols)

    def part(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.splits[split]
        return self.X[idx], self.y[idx]


def load_dataset(
    name: str, seed: int = 0, n_samples: int = 3000, n_features: int = 20, drift: bool = False
) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    if name == "diabetes":
        X, y = skd.load_diabetes(return_X_y=True)
        above = (y > np.median(y)).astype(np.int64)
        ds = Dataset(
            name,
            X.astype(np.float64),
            y.astype(np.float64),
            TaskSpec("progression", "regression"),
            {"above_median": (TaskSpec("above_median", "classification", (0, 1)), above)},
        )
    elif name == "synthetic":
        ds = _synthetic(seed, n_samples, n_features, drift)
    else:
        loader = {
            "digits": skd.load_digits,
            "breast_cancer": skd.load_breast_cancer,
            "wine": skd.load_wine,
        }[name]
        X, y = loader(return_X_y=True)
        classes = tuple(int(c) for c in np.unique(y))
        ds = Dataset(
            name,
            X.astype(np.float64),
            y.astype(np.int64),
            TaskSpec("label", "classification", classes),
        )
    ds.splits = split_indices(ds, seed)
    return ds


def split_indices(
    ds: Dataset, seed: int, heldout_fraction: float = 0.2, test_fraction: float = 0.2
) -> dict[str, np.ndarray]:
    """Train / held-out / test row indices (stratified for classification)."""
    rest_fraction = heldout_fraction + test_fraction
    if not (heldout_fraction > 0 and test_fraction > 0 and rest_fraction < 1):
        raise ValueError("held-out and test fractions must be positive and sum to less than 1")
    idx = np.arange(len(ds.y))
    stratify = ds.y if ds.task.kind == "classification" else None
    train, rest = train_test_split(
        idx, test_size=rest_fraction, random_state=seed, stratify=stratify
    )
    strat_rest = ds.y[rest] if stratify is not None else None
    heldout, test = train_test_split(
        rest, test_size=test_fraction / rest_fraction, random_state=seed, stratify=strat_rest
    )
    if ds.name == "synthetic":  # keep time order so concept drift shows up in the test stream
        test = np.sort(test)
    if ds.drift_start is not None:  # the past to learn from, the stream as the future after it
        n_test = round(len(idx) * test_fraction)
        past, test = idx[: len(idx) - n_test], idx[len(idx) - n_test :]
        train, heldout = train_test_split(
            past,
            test_size=heldout_fraction / (1 - test_fraction),
            random_state=seed,
            stratify=ds.y[past] if stratify is not None else None,
        )
    return {"train": train, "heldout": heldout, "test": test}


def _synthetic(seed: int, n_samples: int, n_features: int, drift: bool) -> Dataset:
    """Binary classification plus a regression task on the same features.

    With ``drift``, the rows are a stream in time order: train and held-out come from the first
    80% (the past), the test stream is the last 20%, and halfway through it (row ``0.9 n``)
    the world changes: the classification boundary rotates (a new concept, so the models
    degrade and online strategies, ``hedge`` and ``select_best``, have work) and the population
    shifts (every feature shrinks to 30% of its spread, towards the boundary), which the feature
    drift gauges and the estimated accuracy see before any label does.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, n_features))
    w = rng.normal(size=n_features)
    w2 = rng.normal(size=n_features)
    logits = X @ w + 0.5 * np.sin(X[:, 0] * 2)
    start = n_samples - n_samples // 10 if drift else None
    if start is not None:
        X[start:] *= 0.3
        logits[start:] = X[start:] @ (0.5 * w + w2)
    y = (logits + rng.normal(scale=0.5, size=n_samples) > 0).astype(np.int64)
    value = X @ w2 + 0.3 * X[:, 1] ** 2 + rng.normal(scale=0.3, size=n_samples)
    return Dataset(
        "synthetic",
        X,
        y,
        TaskSpec("label", "classification", (0, 1)),
        {"value": (TaskSpec("value", "regression"), value)},
        drift_start=start,
    )
