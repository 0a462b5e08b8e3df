"""Property-based checks (hypothesis) over random shapes, probabilities and weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from combiners import get_combiner
from combiners.errors import NoModelsAvailableError

SETTINGS = settings(max_examples=25, deadline=None)


@st.composite
def probabilities(draw: Any, min_models: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``P`` ``(n_models, n_events, n_classes)`` of valid probabilities and labels ``y``."""
    n_models = draw(st.integers(min_models, 4))
    n_events = draw(st.integers(2, 12))
    n_classes = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(
        np.full(n_classes, draw(st.sampled_from([0.3, 1.0, 5.0]))), (n_models, n_events)
    )
    y = np.arange(n_events) % n_classes  # every class present
    return P, rng.permutation(y)


def weights_for(n: int) -> st.SearchStrategy[list[float]]:
    return st.lists(st.floats(0.01, 10.0), min_size=n, max_size=n)


AVERAGING = ["weighted_average", "soft_vote", "hedge", "select_best"]


@SETTINGS
@given(data=probabilities(), name=st.sampled_from([*AVERAGING, "weighted_sum"]))
def test_identical_models_combine_to_that_model(data: Any, name: str) -> None:
    P, y = data
    same = np.repeat(P[:1], P.shape[0], axis=0)
    params = {"bias": 0.0} if name == "weighted_sum" else {}
    combiner = get_combiner(name, **params).fit(same, y)
    np.testing.assert_allclose(combiner.combine(same), P[0], rtol=0, atol=1e-12)


@SETTINGS
@given(
    values=st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3),
    n_models=st.integers(1, 4),
    name=st.sampled_from(["weighted_average", "hedge", "select_best"]),
)
def test_identical_regressors_combine_to_that_model(
    values: list[float], n_models: int, name: str
) -> None:
    P = np.tile(np.asarray(values)[None, :, None], (n_models, 1, 1))
    out = get_combiner(name, task="regression").fit(P, np.zeros(3)).combine(P)
    np.testing.assert_allclose(out, P[0], rtol=1e-12, atol=1e-9)


@SETTINGS
@given(
    data=probabilities(min_models=2),
    name=st.sampled_from(["weighted_average", "soft_vote", "weighted_sum", "hard_vote"]),
    seed=st.integers(0, 1000),
    raw=st.lists(st.integers(1, 5), min_size=4, max_size=4),
)
def test_permuting_models_with_weights_changes_nothing(
    data: Any, name: str, seed: int, raw: list[int]
) -> None:
    P, y = data
    # integer weights keep hard-vote sums exact, so even ties resolve identically
    weights = np.asarray(raw[: P.shape[0]], dtype=float)
    perm = np.random.default_rng(seed).permutation(P.shape[0])
    params = {"bias": 0.0} if name == "weighted_sum" else {}
    out = get_combiner(name, weights=weights, **params).fit(P, y).combine(P)
    permuted = get_combiner(name, weights=weights[perm], **params).fit(P[perm], y)
    np.testing.assert_allclose(permuted.combine(P[perm]), out, rtol=0, atol=1e-12)


@SETTINGS
@given(data=probabilities(min_models=2), seed=st.integers(0, 1000))
def test_permuting_models_changes_nothing_for_hedge(data: Any, seed: int) -> None:
    P, y = data
    perm = np.random.default_rng(seed).permutation(P.shape[0])
    out = get_combiner("hedge").fit(P, y).partial_fit(P, y).combine(P)
    permuted = get_combiner("hedge").fit(P[perm], y).partial_fit(P[perm], y).combine(P[perm])
    np.testing.assert_allclose(permuted, out, rtol=0, atol=1e-12)


@SETTINGS
@given(
    data=probabilities(),
    name=st.sampled_from(
        [
            "weighted_average",
            "weighted_sum",
            "soft_vote",
            "hard_vote",
            "hedge",
            "select_best",
            "stacking",
        ]
    ),
    weights_seed=st.integers(0, 1000),
    mask_seed=st.integers(0, 1000),
)
def test_classification_outputs_are_probabilities(
    data: Any, name: str, weights_seed: int, mask_seed: int
) -> None:
    P, y = data
    rng = np.random.default_rng(mask_seed)
    combiner = get_combiner(name).fit(P, y)
    mask = rng.random(P.shape[0]) < 0.6
    mask[rng.integers(P.shape[0])] = True
    weights = getattr(combiner, "weights_", None)
    if weights is not None and not np.asarray(weights)[mask].sum() > 0:
        # every available model was fitted a weight of 0 (weighted_sum may learn that): no
        # probabilities can be made of them, and the combiner says so
        with pytest.raises(NoModelsAvailableError, match="weights sum to zero"):
            combiner.combine(P, available=mask)
        mask = np.ones_like(mask)
    for out in (combiner.combine(P), combiner.combine(P, available=mask)):
        assert out.shape == P.shape[1:]
        assert np.all(out >= 0)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-9)


@settings(max_examples=10, deadline=None)
@given(data=probabilities(), bias=st.lists(st.floats(-2, 2), min_size=4, max_size=4))
def test_weighted_sum_any_bias_keeps_probabilities(data: Any, bias: list[float]) -> None:
    P, y = data
    combiner = get_combiner("weighted_sum", bias=bias[: P.shape[2]]).fit(P, y)
    out = combiner.combine(P)
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=0, atol=1e-9)


def test_a_weighted_sum_whose_available_models_were_all_fitted_zero_weight_says_so() -> None:
    """The case hypothesis found: model 0 is fitted a weight of 0, and only model 0 is left."""
    p0 = [5.3e-4, 4.4e-3, 0.4207, 0.9605, 2.1e-8, 0.9260, 2.3e-4]
    p1 = [0.9795, 0.0496, 0.6918, 0.0614, 0.8933, 0.8536, 0.9834]
    P = np.stack([np.column_stack([p, 1 - np.array(p)]) for p in (p0, p1)])
    combiner = get_combiner("weighted_sum").fit(P, np.array([0, 1, 0, 1, 0, 1, 0]))
    assert combiner.weights_.tolist() == [0.0, 1.0]
    with pytest.raises(NoModelsAvailableError, match="weights sum to zero"):
        combiner.combine(P, available=np.array([True, False]))
