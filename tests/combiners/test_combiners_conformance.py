"""One suite, every registered combiner, each task it supports (like parametrize_with_checks)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from combiners import (
    ModelCountError,
    NoModelsAvailableError,
    NonFiniteError,
    NotFittedError,
    ShapeError,
    available_combiners,
    load_state,
    resolve,
    save_state,
)

#: Every (name, task) pair: each registered strategy on each task it supports.
CASES = [(name, task) for name in available_combiners() for task in resolve(name).supported_tasks]
pytestmark = pytest.mark.parametrize(("name", "task"), CASES)


def _features(rng: np.random.Generator, n_events: int) -> np.ndarray:
    return rng.normal(size=(n_events, 4))


def test_every_registered_name_is_covered(name: str, task: str) -> None:
    assert name in available_combiners()
    assert task in resolve(name).supported_tasks


def test_shape_and_fit_returns_self(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    X = _features(rng, P.shape[1])
    combiner = build(name)
    assert combiner.fit(P, y, X) is combiner
    out = combiner.combine(P, X)
    assert out.shape == (P.shape[1], P.shape[2])
    assert out.dtype == np.float64
    assert np.all(np.isfinite(out))
    if task == "classification":
        assert np.all(out >= 0)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)


def test_init_only_stores_params(name: str, task: str, build: Any) -> None:
    combiner = build(name)
    params = combiner.get_params()
    assert set(params) == set(resolve(name).param_names())
    assert type(combiner)(**params).get_params() == params
    assert not combiner.is_fitted()
    assert repr(combiner).startswith(type(combiner).__name__ + "(")


def test_unfitted_raises(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    combiner = build(name)
    with pytest.raises(NotFittedError, match="not fitted"):
        combiner.combine(P)
    with pytest.raises(ValueError):
        combiner.combine(P)
    with pytest.raises(AttributeError):
        combiner.combine(P)
    if combiner.online:
        with pytest.raises(NotFittedError):
            combiner.partial_fit(P, y)
    with pytest.raises(NotFittedError):
        save_state(combiner)


def test_input_not_mutated(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    X = _features(rng, P.shape[1])
    available = np.array([True, False, True])
    P_bad = P.copy()
    P_bad[1] = np.nan
    copies = [a.copy() for a in (P, y, X, available, P_bad)]
    combiner = build(name).fit(P, y, X)
    combiner.combine(P, X)
    combiner.combine(P_bad, X, available=available)
    if combiner.online:
        combiner.partial_fit(P_bad, y, X, available=available)
    for original, copy in zip((P, y, X, available, P_bad), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_one_model(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task, n_models=1)
    out = build(name).fit(P, y).combine(P)
    assert out.shape == P.shape[1:]


def test_zero_events(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    combiner = build(name).fit(P, y)
    empty = P[:, :0]
    X_empty = np.zeros((0, 4))
    assert combiner.combine(empty, X_empty).shape == (0, P.shape[2])
    if combiner.online:
        combiner.partial_fit(empty, y[:0])
        assert combiner.combine(P).shape == P.shape[1:]


def test_deterministic(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    first = build(name).fit(P, y).combine(P)
    second = build(name).fit(P, y).combine(P)
    np.testing.assert_array_equal(first, second)


def test_model_count_must_match_fit(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    combiner = build(name).fit(P, y)
    with pytest.raises(ModelCountError, match="3 models"):
        combiner.combine(P[:2])


def test_non_finite_rejected(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    bad = P.copy()
    bad[0, 1, 0] = np.nan
    with pytest.raises(NonFiniteError):
        build(name).fit(bad, y)
    combiner = build(name).fit(P, y)
    bad[0, 1, 0] = np.inf
    with pytest.raises(NonFiniteError, match="1 NaN/inf"):
        combiner.combine(bad)


def test_wrong_ndim(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    with pytest.raises(ShapeError, match="3-d"):
        build(name).fit(P[0], y)
    combiner = build(name).fit(P, y)
    with pytest.raises(ShapeError, match="3-d"):
        combiner.combine(P[0])


def test_available_mask(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    combiner = build(name).fit(P, y)
    mask = np.array([True, False, True])
    garbage_nan, garbage_big = P.copy(), P.copy()
    garbage_nan[1] = np.nan
    garbage_big[1] = 1e6
    out = combiner.combine(garbage_nan, available=mask)
    assert out.shape == P.shape[1:]
    assert np.all(np.isfinite(out))
    # the masked model's rows do not matter at all
    np.testing.assert_array_equal(out, combiner.combine(garbage_big, available=mask))
    if task == "classification":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
    # all True behaves like no mask
    np.testing.assert_array_equal(
        combiner.combine(P, available=np.ones(3, bool)), combiner.combine(P)
    )
    with pytest.raises(NoModelsAvailableError):
        combiner.combine(P, available=np.zeros(3, bool))
    with pytest.raises(ShapeError, match="available"):
        combiner.combine(P, available=np.ones(2, bool))
    with pytest.raises(NonFiniteError):
        combiner.combine(garbage_nan, available=np.array([False, True, True]))


def test_state_round_trip(
    name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task)
    P2, y2 = make_data(rng, task)
    combiner = build(name).fit(P, y)
    if combiner.online:
        combiner.partial_fit(P2, y2, available=np.array([True, False, True]))
    meta, arrays = save_state(combiner)
    # through the formats a store would use: JSON text and a safetensors blob
    meta = json.loads(json.dumps(meta))
    arrays = load_tensors(save_tensors(arrays))
    restored = load_state(meta, arrays)
    assert type(restored) is type(combiner)
    assert restored.get_params() == json.loads(json.dumps(combiner.get_params()))
    np.testing.assert_array_equal(restored.combine(P2), combiner.combine(P2))
    np.testing.assert_array_equal(
        restored.combine(P2, available=np.array([False, True, True])),
        combiner.combine(P2, available=np.array([False, True, True])),
    )
    if combiner.online:  # learning resumes where it stopped
        combiner.partial_fit(P, y)
        restored.partial_fit(P, y)
        np.testing.assert_array_equal(restored.combine(P2), combiner.combine(P2))


def test_default_params_table_names_exist(name: str, task: str, default_params: Any) -> None:
    assert set(default_params) <= set(available_combiners())
