"""What the worker uses of a strategy: every registered combiner has ``explain`` and
``model_weights`` and the online ones ``partial_fit``; a user's class named by dotted path needs
only ``fit`` and ``combine``, and is used for what else it has."""

from __future__ import annotations

import numpy as np
import pytest

import combiners
from worker.config import StrategyRef
from worker.inference.strategies import (
    Combiner,
    ExplainingCombiner,
    OnlineCombiner,
    Strategy,
    WeightedCombiner,
)


class Plain:
    """A user's strategy with only what :func:`combiners.resolve` demands."""

    def fit(self, P: np.ndarray, y: np.ndarray) -> Plain:
        return self

    def combine(self, P: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(P).mean(axis=0)


class Learning(Plain):
    def partial_fit(
        self, P: np.ndarray, y: np.ndarray, available: np.ndarray | None = None
    ) -> Learning:
        return self


class Weighing(Plain):
    def model_weights(self) -> np.ndarray:
        return np.array([0.5, 0.5])


def strategy(combiner: Combiner) -> Strategy:
    return Strategy("s", StrategyRef(name="s"), combiner, "test", "strategy")


@pytest.mark.parametrize("name", combiners.available_combiners())
def test_every_registered_combiner_explains_and_weighs_and_the_online_ones_learn(
    name: str,
) -> None:
    combiner = combiners.get_combiner(name)
    online = type(combiner).online
    assert isinstance(combiner, ExplainingCombiner)
    assert isinstance(combiner, WeightedCombiner)
    assert strategy(combiner).online is online
    assert isinstance(combiner, OnlineCombiner) is online


def test_a_user_strategy_is_used_for_what_it_has() -> None:
    plain, learning, weighing = Plain(), Learning(), Weighing()
    assert not strategy(plain).online
    assert not isinstance(plain, ExplainingCombiner)
    assert not isinstance(plain, WeightedCombiner)
    assert strategy(learning).online
    assert isinstance(weighing, WeightedCombiner)
    assert not isinstance(weighing, ExplainingCombiner)
