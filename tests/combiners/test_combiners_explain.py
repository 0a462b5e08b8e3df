"""Per-model weights and contributions: every strategy has weights, the linear ones and stacking
split each output into per-model terms that add up to it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from combiners import Explanation, NotFittedError, available_combiners, get_combiner, resolve

CASES = [(name, task) for name in available_combiners() for task in resolve(name).supported_tasks]
#: The strategies whose output splits into per-model terms (all but the multitask network).
EXPLAINED = [(name, task) for name, task in CASES if name != "multitask"]


@pytest.mark.parametrize(("name", "task"), CASES)
def test_model_weights(name: str, task: str, rng: np.random.Generator, build: Any, make_data: Any):
    P, y = make_data(rng, task)
    comb = build(name, task=task)
    with pytest.raises(NotFittedError):
        comb.model_weights()
    w = comb.fit(P, y).model_weights()
    assert w.shape == (P.shape[0],)
    assert np.all(np.isfinite(w))
    if name != "weighted_sum" or task == "classification":  # regression weights may be < 0
        assert np.all(w >= 0)
        assert w.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("masked", [False, True], ids=["all", "one-down"])
@pytest.mark.parametrize(("name", "task"), EXPLAINED)
def test_contributions_sum_to_the_output(
    name: str, task: str, masked: bool, rng: np.random.Generator, build: Any, make_data: Any
) -> None:
    P, y = make_data(rng, task, n_models=3, n_events=60)
    comb = build(name, task=task).fit(P, y)
    Q = P.copy()
    available = None
    if masked:
        available = np.array([True, False, True])
        Q[1] = np.nan  # what the fan-out leaves for a failed model
    expected = comb.combine(Q, available=available)
    exp = comb.explain(Q, available=available)
    assert isinstance(exp, Explanation)
    assert exp.contributions.shape == P.shape
    assert exp.base.shape == expected.shape
    np.testing.assert_allclose(exp.total(), expected, rtol=0, atol=1e-10)
    if masked:
        assert np.all(exp.contributions[1] == 0)
    if name == "stacking" and task == "classification":
        assert exp.link == "softmax"
    else:
        assert exp.link == "identity"


def test_multitask_has_weights_but_no_split(rng: np.random.Generator, build: Any, make_data: Any):
    P, y = make_data(rng, "classification")
    comb = build("multitask", task="classification").fit(P, y)
    assert comb.explain(P) is None


def test_known_answers() -> None:
    P = np.array([[[0.9, 0.1]], [[0.3, 0.7]]])  # 2 models, 1 event
    soft = get_combiner("soft_vote", weights=[1, 3]).fit(P, [1])
    np.testing.assert_allclose(soft.model_weights(), [0.25, 0.75])
    np.testing.assert_allclose(soft.explain(P).contributions, [[[0.225, 0.025]], [[0.225, 0.525]]])
    hard = get_combiner("hard_vote", weights=[1, 3]).fit(P, [1])
    np.testing.assert_allclose(hard.explain(P).contributions, [[[0.25, 0.0]], [[0.0, 0.75]]])
    best = get_combiner("select_best", k=1).fit(P, [1])  # model 1 is right
    np.testing.assert_allclose(best.model_weights(), [0.0, 1.0])
    R = np.array([[[1.0], [2.0]], [[3.0], [4.0]]])
    ws = get_combiner("weighted_sum", weights=[0.5, 0.25], bias=1.0).fit(R, [2.0, 3.0])
    exp = ws.explain(R)
    np.testing.assert_allclose(exp.contributions[:, :, 0], [[0.5, 1.0], [0.75, 1.0]])
    np.testing.assert_allclose(exp.base, [[1.0], [1.0]])
    hedge = get_combiner("hedge", eta=1.0).fit(P, [0])  # w proportional to p(y=0)
    np.testing.assert_allclose(hedge.model_weights(), [0.75, 0.25])


def test_stacking_terms_are_the_meta_learners(rng: np.random.Generator, make_data: Any) -> None:
    P, y = make_data(rng, "regression", n_models=2, n_events=50)
    comb = get_combiner("stacking", meta_params={"alpha": 1e-6}).fit(P, y)
    exp = comb.explain(P)
    # model 0's term for output 0 is its two output columns times the coefficients on them
    np.testing.assert_allclose(exp.contributions[0, :, 0], P[0] @ comb.coef_[0, :2])
    np.testing.assert_allclose(exp.base[:, 1], comb.intercept_[1])
    shares = comb.model_weights()
    total = np.abs(comb.coef_).sum()
    assert shares[1] == pytest.approx(np.abs(comb.coef_[:, 2:]).sum() / total)


def test_binary_stacking_logit(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, 80)
    p1 = np.clip(y + rng.normal(0, 0.4, (2, 80)), 0.01, 0.99)
    P = np.stack([1 - p1, p1], axis=2)
    comb = get_combiner("stacking").fit(P, y)
    exp = comb.explain(P)
    assert np.all(exp.contributions[:, :, 0] == 0)
    logit = exp.contributions[:, :, 1].sum(axis=0) + exp.base[:, 1]
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), comb.combine(P)[:, 1], atol=1e-12)
