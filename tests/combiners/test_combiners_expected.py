"""Hand-computed expectations, one small case per strategy (numbers worked out in comments)."""

from __future__ import annotations

import numpy as np
import pytest

from combiners import get_combiner

# 3 models, 2 events, 3 classes
P_CLS = np.array(
    [
        [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]],
        [[0.1, 0.8, 0.1], [0.3, 0.4, 0.3]],
        [[0.5, 0.1, 0.4], [0.1, 0.1, 0.8]],
    ]
)
Y_CLS = np.array([0, 2])
# 2 models, 3 events, 1 output
P_REG = np.array([[[1.0], [2.0], [3.0]], [[3.0], [2.0], [7.0]]])


def test_weighted_average_by_hand() -> None:
    out = get_combiner("weighted_average", weights=[1, 3]).fit(P_REG, [0, 0, 0]).combine(P_REG)
    # (1*1 + 3*3)/4 = 2.5, (2 + 6)/4 = 2, (3 + 21)/4 = 6
    np.testing.assert_allclose(out[:, 0], [2.5, 2.0, 6.0])


def test_weighted_average_renormalises_over_available() -> None:
    comb = get_combiner("weighted_average", weights=[1, 2, 1]).fit(P_CLS, Y_CLS)
    P = P_CLS.copy()
    P[1] = np.nan
    out = comb.combine(P, available=[True, False, True])
    # weights 1 and 1 over models 0 and 2: their plain mean
    np.testing.assert_allclose(out, [[0.55, 0.2, 0.25], [0.15, 0.15, 0.7]])


def test_soft_vote_by_hand() -> None:
    out = get_combiner("soft_vote", weights=[2, 1, 1]).fit(P_CLS, Y_CLS).combine(P_CLS)
    # event 0: (2*[.6,.3,.1] + [.1,.8,.1] + [.5,.1,.4]) / 4 = [1.8, 1.5, .7] / 4
    # event 1: (2*[.2,.2,.6] + [.3,.4,.3] + [.1,.1,.8]) / 4 = [.8, .9, 2.3] / 4
    np.testing.assert_allclose(out, [[0.45, 0.375, 0.175], [0.2, 0.225, 0.575]])


def test_hard_vote_by_hand() -> None:
    # argmax per model: event 0 -> 0, 1, 0; event 1 -> 2, 1, 2
    out = get_combiner("hard_vote", weights=[1, 2.5, 1]).fit(P_CLS, Y_CLS).combine(P_CLS)
    # event 0: class 0 gets 1 + 1 = 2, class 1 gets 2.5 -> shares [2, 2.5, 0] / 4.5
    np.testing.assert_allclose(out, [[2 / 4.5, 2.5 / 4.5, 0], [0, 2.5 / 4.5, 2 / 4.5]])
    assert list(out.argmax(axis=1)) == [1, 1]


def test_hard_vote_tie_goes_to_lowest_class() -> None:
    P = np.array([[[0.1, 0.2, 0.7]], [[0.1, 0.8, 0.1]]])  # votes for 2 and 1, equal weight
    out = get_combiner("hard_vote").fit(P, [0]).combine(P)
    np.testing.assert_allclose(out, [[0, 0.5, 0.5]])
    assert out.argmax() == 1


def test_weighted_sum_regression_learns_exact_combination() -> None:
    y = 2 * P_REG[0, :, 0] - 1 * P_REG[1, :, 0] + 3  # = [2, 5, 2]
    comb = get_combiner("weighted_sum", alpha=0.0).fit(P_REG, y)
    np.testing.assert_allclose(comb.weights_, [2, -1], atol=1e-9)
    np.testing.assert_allclose(comb.bias_, [3], atol=1e-9)
    np.testing.assert_allclose(comb.combine(P_REG)[:, 0], [2, 5, 2], atol=1e-9)


def test_weighted_sum_given_weights_learns_bias_as_mean_residual() -> None:
    comb = get_combiner("weighted_sum", weights=[0.5, 0.5]).fit(P_REG, [3.0, 3.0, 6.0])
    # mean predictions 2, 2, 5 -> residuals 1, 1, 1
    np.testing.assert_allclose(comb.bias_, [1.0])
    # model 1 missing: weight 0.5 rescaled to the total 1.0 -> model 0 + 1
    out = comb.combine(P_REG, available=[True, False])
    np.testing.assert_allclose(out[:, 0], [2.0, 3.0, 4.0])


def test_weighted_sum_classification_clips_and_renormalises() -> None:
    comb = get_combiner("weighted_sum", weights=[1, 0, 1], bias=[0.0, -0.2, 0.1])
    out = comb.fit(P_CLS, Y_CLS).combine(P_CLS)
    # event 0: mean of models 0, 2 = [.55, .2, .25] + bias = [.55, 0, .35] -> / .9
    # event 1: [.15, .15, .7] + bias = [.15, -.05, .8] -> clip [.15, 0, .8] -> / .95
    np.testing.assert_allclose(out, [[0.55 / 0.9, 0, 0.35 / 0.9], [0.15 / 0.95, 0, 0.8 / 0.95]])


def test_weighted_sum_classification_learns_nonnegative_convex_weights(
    rng: np.random.Generator,
) -> None:
    y = rng.integers(0, 3, 60)
    perfect = np.eye(3)[y] * 0.9 + 0.1 / 3
    noise = rng.dirichlet(np.ones(3), size=60)
    P = np.stack([noise, perfect])
    comb = get_combiner("weighted_sum", alpha=1e-6).fit(P, y)
    assert np.all(comb.weights_ >= 0)
    assert comb.weights_.sum() == pytest.approx(1.0)
    assert comb.weights_[1] > 0.9
    out = comb.combine(P)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert np.all(out.argmax(axis=1) == y)


def test_stacking_regression_recovers_linear_combination() -> None:
    y = 0.5 * P_REG[0, :, 0] + 0.25 * P_REG[1, :, 0] + 1  # = [2.25, 2.5, 4.25]
    comb = get_combiner("stacking", meta_params={"alpha": 1e-10}).fit(P_REG, y)
    np.testing.assert_allclose(comb.coef_, [[0.5, 0.25]], atol=1e-6)
    np.testing.assert_allclose(comb.combine(P_REG)[:, 0], y, atol=1e-6)


def test_stacking_passthrough_uses_features(rng: np.random.Generator) -> None:
    X = rng.normal(size=(50, 2))
    y = 3 * X[:, 0] - X[:, 1]  # the models know nothing: only X explains y
    P = rng.normal(size=(2, 50, 1))
    comb = get_combiner("stacking", passthrough=True, meta_params={"alpha": 1e-8}).fit(P, y, X)
    np.testing.assert_allclose(comb.coef_[0, 2:], [3, -1], atol=1e-5)
    np.testing.assert_allclose(comb.combine(P, X)[:, 0], y, atol=1e-5)


def test_stacking_missing_model_gets_mean_of_available() -> None:
    comb = get_combiner("stacking", meta_params={"alpha": 1e-10}).fit(P_REG, [2.25, 2.5, 4.25])
    P = P_REG.copy()
    P[1] = np.nan
    out = comb.combine(P, available=[True, False])
    # model 1 is replaced by model 0: 0.5 p0 + 0.25 p0 + 1
    np.testing.assert_allclose(out[:, 0], 0.75 * P_REG[0, :, 0] + 1, atol=1e-6)


def test_stacking_classification_absent_class_gets_zero() -> None:
    y = np.array([0, 2, 0, 2])
    P = np.concatenate([P_CLS, P_CLS], axis=1)
    out = get_combiner("stacking").fit(P, y).combine(P)
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(out[:, 1], 0.0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_select_best_by_mae() -> None:
    y = np.array([1.0, 2.0, 3.0])
    # model 0: errors 0, 0, 0 -> mae 0; model 1: errors 2, 0, 4 -> mae 2
    comb = get_combiner("select_best").fit(P_REG, y)
    assert comb.metric_ == "mae"
    np.testing.assert_allclose(comb.scores_, [0.0, 2.0])
    np.testing.assert_array_equal(comb.combine(P_REG), P_REG[0])
    k2 = get_combiner("select_best", k=2).fit(P_REG, y)
    np.testing.assert_allclose(k2.combine(P_REG), P_REG.mean(axis=0))


def test_select_best_rmse_and_log_loss() -> None:
    y = np.array([1.0, 2.0, 3.0])
    comb = get_combiner("select_best", metric="rmse").fit(P_REG, y)
    np.testing.assert_allclose(comb.scores_, [0.0, np.sqrt((4 + 0 + 16) / 3)])
    cls = get_combiner("select_best", metric="log_loss").fit(P_CLS, Y_CLS)
    # p(true): model 0 -> .6, .6; model 1 -> .1, .3; model 2 -> .5, .8
    expected = [-np.log(0.6), -(np.log(0.1) + np.log(0.3)) / 2, -(np.log(0.5) + np.log(0.8)) / 2]
    np.testing.assert_allclose(cls.scores_, expected)
    assert list(cls.ranking_) == [2, 0, 1]


def test_select_best_rolling_window_updates_and_reverts() -> None:
    P = np.array([[[0.0]] * 4, [[10.0]] * 4])  # model 0 says 0, model 1 says 10
    comb = get_combiner("select_best", window=3).fit(P, [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(comb.scores_, [0, 10])
    # two events where y = 10: window = [0, 10, 10] -> model 0 mae 20/3, model 1 mae 10/3
    comb.partial_fit(P[:, :2], [10.0, 10.0])
    np.testing.assert_allclose(comb.scores_, [20 / 3, 10 / 3])
    assert list(comb.selected_) == [1]
    # a batch bigger than the window keeps its last 3 events: y = 0, 0, 5
    comb.partial_fit(P, [10.0, 0.0, 0.0, 5.0])
    np.testing.assert_allclose(comb.scores_, [5 / 3, 25 / 3])
    assert list(comb.selected_) == [0]


def test_select_best_skips_unavailable_models_when_scoring() -> None:
    P = np.array([[[0.0]] * 2, [[10.0]] * 2])
    comb = get_combiner("select_best", window=4).fit(P, [0.0, 0.0])
    P_bad = P.copy()
    P_bad[0] = np.nan
    comb.partial_fit(P_bad, [10.0, 10.0], available=[False, True])
    # model 0 keeps its 2 scored events (mae 0); model 1 has 4: 10, 10, 0, 0 -> 5
    np.testing.assert_allclose(comb.scores_, [0.0, 5.0])
    np.testing.assert_array_equal(comb.counts_, [2, 4])


def test_hedge_weights_by_hand() -> None:
    P = np.array([[[0.8, 0.2]], [[0.4, 0.6]]])
    comb = get_combiner("hedge", eta=0.5, share=0.0).fit(P, [0])  # plain Hedge
    # losses: -log .8, -log .4 -> w proportional to .8**.5, .4**.5
    w = np.sqrt([0.8, 0.4])
    np.testing.assert_allclose(comb.weights_, w / w.sum())
    comb.partial_fit(P, [1])
    # second update: -log .2, -log .6 -> w proportional to sqrt(.8 * .2), sqrt(.4 * .6)
    w = np.sqrt([0.8 * 0.2, 0.4 * 0.6])
    np.testing.assert_allclose(comb.weights_, w / w.sum())
    np.testing.assert_allclose(comb.combine(P)[0], (w / w.sum()) @ P[:, 0])
    assert comb.n_updates_ == 2


def test_hedge_fixed_share_by_hand() -> None:
    P = np.array([[[0.8, 0.2]], [[0.4, 0.6]]])
    comb = get_combiner("hedge", eta=0.5, share=0.1).fit(P, [0])
    w = np.sqrt([0.8, 0.4])
    w = w / w.sum()  # fit: no share
    np.testing.assert_allclose(comb.weights_, w)
    comb.partial_fit(P, [1])
    w = w * np.sqrt([0.2, 0.6])
    w = 0.9 * w / w.sum() + 0.1 / 2
    np.testing.assert_allclose(comb.weights_, w)


def test_hedge_fixed_share_gives_a_beaten_model_its_weight_back() -> None:
    """Plain Hedge stays on the old leader after the world changes; fixed share follows."""
    right, wrong = np.array([0.95, 0.05]), np.array([0.05, 0.95])
    before = np.stack([np.tile(right, (10, 1)), np.tile(wrong, (10, 1))])  # model 0 right
    after = before[::-1]  # model 1 right
    y = np.zeros(10, dtype=int)
    weights = {}
    for share in (0.0, 0.05):
        comb = get_combiner("hedge", eta=0.5, share=share).fit(before, y)
        for _ in range(100):
            comb.partial_fit(before, y)
        assert comb.weights_[0] > 0.95
        for _ in range(20):
            comb.partial_fit(after, y)
        weights[share] = comb.weights_
    assert weights[0.0][0] > 0.99  # plain Hedge: 120 batches of lead are never given back
    assert weights[0.05][1] > 0.95  # fixed share: 20 batches were enough
    assert weights[0.05].min() >= 0.05 / 2 - 1e-12


def test_hedge_regression_loss_is_normalised() -> None:
    comb = get_combiner("hedge", eta=1.0).fit(P_REG, [1.0, 2.0, 3.0])
    # mse: model 0 -> 0, model 1 -> 20/3 (the max) -> normalised losses 0, 1
    np.testing.assert_allclose(comb.weights_, np.array([1, np.exp(-1)]) / (1 + np.exp(-1)))


def test_hedge_unavailable_model_gets_mean_loss() -> None:
    P = np.array([[[0.8, 0.2]], [[0.4, 0.6]], [[0.5, 0.5]]])
    comb = get_combiner("hedge", eta=1.0, share=0.0).fit(P, [0])
    P_bad = P.copy()
    P_bad[2] = np.nan
    comb.partial_fit(P_bad, [0], available=[True, True, False])
    # second batch: losses -log .8, -log .4 and, for model 2, their mean
    log_w = np.log([0.8, 0.4, 0.5]) + np.log([0.8, 0.4, np.sqrt(0.8 * 0.4)])
    np.testing.assert_allclose(comb.weights_, np.exp(log_w) / np.exp(log_w).sum())


@pytest.mark.slow
def test_multitask_layout_and_learning(rng: np.random.Generator) -> None:
    n = 120
    y = np.column_stack([rng.integers(0, 3, n), rng.normal(size=n)])
    cls_block = np.eye(3)[y[:, 0].astype(int)] * 0.5 + 0.5 / 3  # informative probabilities
    P = np.stack([np.hstack([cls_block, y[:, 1:] + s]) for s in (0.5, -0.5)])
    tasks = [
        {"name": "digit", "type": "classification", "n_outputs": 3},
        {"name": "value", "type": "regression", "n_outputs": 1},
    ]
    comb = get_combiner("multitask", tasks=tasks, epochs=200, random_state=3).fit(P, y)
    out = comb.combine(P)
    assert out.shape == (n, 4)
    np.testing.assert_allclose(out[:, :3].sum(axis=1), 1.0)
    assert np.mean(out[:, :3].argmax(axis=1) == y[:, 0]) > 0.95
    # the two models are biased +-0.5 around y: the mean is exact, the net should be close
    assert np.mean(np.abs(out[:, 3] - y[:, 1])) < 0.25
    same = get_combiner("multitask", tasks=tasks, epochs=200, random_state=3).fit(P, y)
    np.testing.assert_array_equal(same.combine(P), out)


@pytest.mark.slow
def test_multitask_use_features(rng: np.random.Generator) -> None:
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] > 0).astype(int)
    P = np.full((2, 80, 2), 0.5)  # uninformative models: only X helps
    comb = get_combiner("multitask", use_features=True, epochs=150).fit(P, y, X)
    assert np.mean(comb.combine(P, X).argmax(axis=1) == y) > 0.9
