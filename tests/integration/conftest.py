"""Fixtures for the worker's broker tests: one trained model store for the session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model_store import ModelStore
from tests.support.kafka import Broker
from tests.support.worker import Topics


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """breast_cancer: rf, hgb, linear, mlp and every strategy, fitted on its held-out split."""
    from worker.train import train

    root = tmp_path_factory.mktemp("trained") / "model-store"
    train("breast_cancer", root, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def test_rows(trained_store: Path) -> np.ndarray:
    return np.asarray(ModelStore(trained_store).load_dataset("test").arrays["X"])


@pytest.fixture
def topics(kafka: Broker, topic_factory: Callable[..., str]) -> Callable[..., Topics]:
    def make(partitions: int = 1) -> Topics:
        return Topics(
            input=topic_factory("features", partitions),
            output=topic_factory("predictions", partitions),
            labels=topic_factory("labels", partitions),
            dead_letter=topic_factory("dlq", 1),
        )

    return make
