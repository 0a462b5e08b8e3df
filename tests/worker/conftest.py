"""Fixtures for the worker tests: a model store trained once per session, tiny published models.

``rng``, ``registry`` and ``tmp_store`` come from ``tests/conftest.py``. The trained store is
the real thing (``worker.tools.train.train`` on ``wine``: 4 base models, 7 fitted strategies, the
held-out and test splits), so pipeline, strategy and replay tests run against what the worker
serves. Tests that change a store work on a copy.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from model_store import ModelStore
from worker.tools.train import TrainReport, train

TRAIN_DATASET = "wine"
TRAIN_SEED = 0


@dataclass(frozen=True)
class TrainedStore:
    """A store written by ``train``: its directory, the report, the config it wrote."""

    root: Path
    report: TrainReport
    config: Path
    seed: int = TRAIN_SEED

    @property
    def dataset(self) -> str:
        return self.report.dataset

    @property
    def model_names(self) -> list[str]:
        return [name for scope, name, _ in self.report.rows if scope == "model"]

    @property
    def strategy_names(self) -> list[str]:
        return [name for scope, name, _ in self.report.rows if scope == "strategy"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    """``wine`` trained once (about 3 s); read-only: copy it (``trained_copy``) to change it."""
    base = tmp_path_factory.mktemp("trained")
    report = train(TRAIN_DATASET, base / "store", seed=TRAIN_SEED, progress=False)
    assert report.config_path is not None
    return TrainedStore(base / "store", report, report.config_path)


@pytest.fixture
def trained_copy(trained: TrainedStore, tmp_path: Path) -> TrainedStore:
    """A private copy of the trained store and its config, free to promote and publish into."""
    root = tmp_path / "store"
    shutil.copytree(trained.root, root)
    config = tmp_path / "streamfuse.yaml"
    shutil.copy(trained.config, config)
    return TrainedStore(root, trained.report, config)


@pytest.fixture
def publish_tiny() -> Callable[..., int]:
    """Publish a tiny logistic regression: ``publish_tiny(store, name, n_features=3, seed=0)``."""

    def publish(store: ModelStore, name: str, n_features: int = 3, seed: int = 0) -> int:
        gen = np.random.default_rng(seed)
        X = gen.normal(size=(40, n_features))
        y = (X[:, 0] > 0).astype(np.int64)
        return store.publish(name, LogisticRegression().fit(X, y))

    return publish
