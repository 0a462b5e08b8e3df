"""Fixtures and data builders for the combiners tests.

Test modules get the builders through fixtures (``build``, ``make_data``), never by importing
this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from combiners import get_combiner

#: Per-name parameters for the generic call pattern (kept small so the suite stays fast).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "multitask": {"epochs": 30, "hidden": 8},
    "select_best": {"window": 25},
}


def build(name: str, **params: Any) -> Any:
    """``get_combiner`` with the table's defaults, overridable."""
    return get_combiner(name, **{**DEFAULT_PARAMS.get(name, {}), **params})


def make_classification(
    rng: np.random.Generator, n_models: int = 3, n_events: int = 40, n_classes: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Informative class probabilities ``(n_models, n_events, n_classes)`` and labels."""
    y = rng.permutation(np.arange(n_events) % n_classes)
    logits = rng.normal(size=(n_models, n_events, n_classes))
    logits[:, np.arange(n_events), y] += rng.uniform(0.5, 2.5, size=(n_models, 1))
    exp = np.exp(logits)
    return exp / exp.sum(axis=2, keepdims=True), y


def make_regression(
    rng: np.random.Generator, n_models: int = 3, n_events: int = 40, n_outputs: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy estimates ``(n_models, n_events, n_outputs)`` of targets ``(n_events, n_outputs)``."""
    y = rng.normal(size=(n_events, n_outputs)) * 3 + 1
    noise = rng.normal(size=(n_models, n_events, n_outputs)) * rng.uniform(
        0.2, 1.5, (n_models, 1, 1)
    )
    return y + noise, y


def make_data(
    rng: np.random.Generator, task: str, n_models: int = 3, n_events: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    if task == "classification":
        return make_classification(rng, n_models, n_events)
    return make_regression(rng, n_models, n_events)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test sees the same data."""
    return np.random.default_rng(12345)


@pytest.fixture(name="build")
def build_fixture() -> Callable[..., Any]:
    """``get_combiner`` with the per-name defaults of ``DEFAULT_PARAMS``."""
    return build


@pytest.fixture(name="make_data")
def make_data_fixture() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """``make_data(rng, task, n_models=3, n_events=40) -> (P, y)``."""
    return make_data


@pytest.fixture(name="default_params")
def default_params_fixture() -> dict[str, dict[str, Any]]:
    return DEFAULT_PARAMS
