"""Bad input gets its specific exception, and the message says what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest

import combiners
from combiners import (
    CombinerError,
    InvalidCombinerClassError,
    InvalidParameterError,
    ModelCountError,
    NoModelsAvailableError,
    NonFiniteError,
    NotFittedError,
    RegistrationError,
    ShapeError,
    StateError,
    TargetError,
    UnknownCombinerError,
    UnknownParameterError,
    WeightsError,
    get_combiner,
    load_state,
    register,
    save_state,
)

P = np.full((3, 4, 2), 0.5)
Y = np.array([0, 1, 0, 1])


def test_every_error_is_a_combiner_error_and_a_builtin() -> None:
    pairs = {
        UnknownCombinerError: LookupError,
        InvalidCombinerClassError: TypeError,
        RegistrationError: ValueError,
        UnknownParameterError: TypeError,
        InvalidParameterError: ValueError,
        WeightsError: ValueError,
        NotFittedError: AttributeError,
        ShapeError: ValueError,
        ModelCountError: ValueError,
        NonFiniteError: ValueError,
        TargetError: ValueError,
        NoModelsAvailableError: ValueError,
        StateError: ValueError,
    }
    for error, builtin in pairs.items():
        assert issubclass(error, CombinerError)
        assert issubclass(error, builtin)
    assert issubclass(NotFittedError, ValueError)
    assert issubclass(ModelCountError, ShapeError)
    assert issubclass(WeightsError, InvalidParameterError)


def test_constructors_take_domain_values() -> None:
    err = ModelCountError(3, 2)
    assert (err.expected, err.got) == (3, 2)
    assert str(err) == "P: expected 3 models (as in fit) along axis 0, got 2 models"
    assert "before combine()" in str(NotFittedError("SoftVote"))


def test_unknown_name_lists_known_and_suggests() -> None:
    with pytest.raises(UnknownCombinerError) as info:
        get_combiner("hedeg")
    message = str(info.value)
    for name in combiners.available_combiners():
        assert name in message
    assert "Did you mean 'hedge'?" in message
    with pytest.raises(LookupError):
        combiners.resolve("nope")


def test_dotted_path_errors() -> None:
    with pytest.raises(UnknownCombinerError, match="no_such_module"):
        combiners.resolve("no_such_module:Thing")
    with pytest.raises(UnknownCombinerError, match="Nothing"):
        combiners.resolve("numpy:Nothing")
    with pytest.raises(InvalidCombinerClassError, match="missing fit, combine"):
        combiners.resolve("collections:OrderedDict")


def test_unknown_parameter_suggests() -> None:
    with pytest.raises(UnknownParameterError, match="Did you mean 'weights'"):
        get_combiner("soft_vote", wieghts=[1, 2])
    with pytest.raises(TypeError):
        get_combiner("hedge", learning_rate=0.1)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("hedge", {"eta": 0}, "'eta' must be a finite number > 0, got 0"),
        ("hedge", {"eps": 2.0}, "'eps'"),
        ("select_best", {"k": 0}, "'k' must be an integer >= 1"),
        ("select_best", {"metric": "auc"}, "'metric' must be one of"),
        ("select_best", {"window": 2.5}, "'window'"),
        ("soft_vote", {"task": "regression"}, "'task' must be 'classification' or None"),
        ("weighted_sum", {"alpha": -1}, "'alpha'"),
        ("stacking", {"meta": "no.such:Model"}, "'meta' must be a dotted path"),
        ("multitask", {"tasks": [{"name": "a", "type": "ranking", "n_outputs": 2}]}, "'tasks'"),
        ("multitask", {"hidden": 0}, "'hidden'"),
        ("weighted_average", {"task": "clustering"}, "'task'"),
    ],
)
def test_bad_parameters_fail_at_construction(name: str, params: dict, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        get_combiner(name, **params)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1, 2], "3 weights, one per model, got \\[1.0, 2.0\\]"),
        ([1, -1, 1], "non-negative"),
        ([0, 0, 0], "not all zero"),
        ([1, np.nan, 1], "finite"),
        ([[1, 2, 3]], "1-d"),
    ],
)
@pytest.mark.parametrize("name", ["weighted_average", "soft_vote", "hard_vote"])
def test_bad_weights(name: str, weights: list, match: str) -> None:
    with pytest.raises(WeightsError, match=match):
        get_combiner(name, weights=weights).fit(P, Y)


def test_weighted_sum_weights_rules() -> None:
    with pytest.raises(WeightsError, match="3 weights"):
        get_combiner("weighted_sum", weights=[1, 2]).fit(P, Y)
    with pytest.raises(WeightsError, match="non-negative"):  # probabilities need w >= 0
        get_combiner("weighted_sum", weights=[1, -1, 1]).fit(P, Y)
    reg = get_combiner("weighted_sum", weights=[1, -1, 1]).fit(P[..., :1] + 1, Y)
    assert reg.task_ == "regression"  # negative weights are fine for regression
    with pytest.raises(InvalidParameterError, match="'bias'"):
        get_combiner("weighted_sum", bias=[1, 2, 3]).fit(P, Y)


def test_shape_messages() -> None:
    comb = get_combiner("soft_vote").fit(P, Y)
    with pytest.raises(
        ShapeError,
        match=r"expected a 3-d array \(n_models, n_events, n_outputs\), got shape \(4, 2\)",
    ):
        comb.combine(P[0])
    with pytest.raises(ModelCountError, match=r"expected 3 models .* got 2 models"):
        comb.combine(P[:2])
    with pytest.raises(ShapeError, match="2 outputs"):
        comb.combine(np.full((3, 4, 3), 1 / 3))
    with pytest.raises(ShapeError, match=r"y: expected shape \(4,\)"):
        get_combiner("soft_vote").fit(P, Y[:3])
    with pytest.raises(ShapeError, match="available: expected a bool array of shape \\(3,\\)"):
        comb.combine(P, available=[True, False])


def test_non_finite_messages() -> None:
    bad = P.copy()
    bad[1, 2, 0] = np.nan
    bad[2, 0, 1] = np.inf
    with pytest.raises(NonFiniteError, match="expected finite values, got 2 NaN/inf of 24"):
        get_combiner("weighted_average").fit(bad, Y)
    with pytest.raises(NonFiniteError, match="y"):
        get_combiner("weighted_average", task="regression").fit(P[..., :1], [0, np.nan, 1, 2])


def test_not_fitted_message() -> None:
    with pytest.raises(NotFittedError, match="this Hedge is not fitted yet: call fit"):
        get_combiner("hedge").combine(P)


def test_target_errors() -> None:
    with pytest.raises(TargetError, match=r"class indices 0\.\.1"):
        get_combiner("soft_vote").fit(P, [0, 1, 2, 0])
    with pytest.raises(TargetError, match="classification-only"):
        get_combiner("hard_vote").fit(P + 1, [0.5, 1, 2, 3])
    with pytest.raises(TargetError, match="at least 2 distinct classes"):
        get_combiner("stacking").fit(P, [0, 0, 0, 0])


def test_no_models_available() -> None:
    comb = get_combiner("hedge").fit(P, Y)
    with pytest.raises(NoModelsAvailableError, match="at least one of the 3 models"):
        comb.combine(P, available=np.zeros(3, bool))
    zero = get_combiner("weighted_average", weights=[1, 0, 0]).fit(P, Y)
    with pytest.raises(NoModelsAvailableError, match="sum to 0"):
        zero.combine(P, available=[False, True, True])


def test_fit_arguments_checked() -> None:
    with pytest.raises(InvalidParameterError, match="'k' must be <= n_models \\(3\\)"):
        get_combiner("select_best", k=4).fit(P, Y)
    with pytest.raises(InvalidParameterError, match="'metric' must be a regression metric"):
        get_combiner("select_best", metric="accuracy", task="regression").fit(P[..., :1], Y)
    with pytest.raises(ShapeError, match="X: expected features"):
        get_combiner("stacking", passthrough=True).fit(P, Y)
    tasks = [{"name": "a", "type": "classification", "n_outputs": 3}]
    with pytest.raises(ShapeError, match="3 outputs along axis 2"):
        get_combiner("multitask", tasks=tasks).fit(P, Y)


def test_registration_errors() -> None:
    with pytest.raises(RegistrationError, match="snake_case"):
        register("Bad-Name")
    with pytest.raises(RegistrationError, match="already taken"):

        @register("soft_vote")
        class Impostor(combiners.BaseCombiner):
            pass


def test_state_errors() -> None:
    comb = get_combiner("stacking", meta="sklearn.linear_model:LinearRegression")
    comb.fit(P[..., :1] + np.arange(4)[None, :, None], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(StateError, match="user-named meta-learner"):
        save_state(comb)
    meta, arrays = save_state(get_combiner("soft_vote").fit(P, Y))
    with pytest.raises(StateError, match="expected format"):
        load_state({**meta, "format": "other/9"}, arrays)
    with pytest.raises(StateError, match="lacks weights_"):
        load_state(meta, {})
    with pytest.raises(StateError, match="BaseCombiner"):
        save_state(object())
