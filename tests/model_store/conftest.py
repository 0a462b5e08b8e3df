"""Fixtures for the model store tests: a fresh store and tiny data sets.

``rng`` and ``tmp_store`` (an empty directory) come from ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_store import ModelStore


@pytest.fixture
def store(tmp_store: Path) -> ModelStore:
    return ModelStore(tmp_store)


@pytest.fixture(scope="session")
def clf_data() -> tuple[np.ndarray, np.ndarray]:
    """60 events, 4 features, 3 string classes."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 4))
    y = np.array(["cat", "dog", "eel"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    return X, y


@pytest.fixture(scope="session")
def reg_data() -> tuple[np.ndarray, np.ndarray]:
    """60 events, 4 features, one target."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 4))
    return X, X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=60)
