"""Fusion and ensemble strategies over base-model outputs (numpy in, numpy out).

Every combiner maps ``P`` of shape ``(n_models, n_events, n_outputs)`` to
``(n_events, n_outputs)``. Build one by name with :func:`get_combiner`; list the names with
:func:`available_combiners`; persist fitted state with :func:`save_state`/:func:`load_state`.
This package never imports ``worker`` or ``model_store``.
"""

from __future__ import annotations

from combiners._base import BaseCombiner
from combiners._explain import Explanation
from combiners._hedge import Hedge
from combiners._multitask import MultiTask
from combiners._registry import available_combiners, get_combiner, register, resolve
from combiners._select import SelectBest
from combiners._stacking import Stacking
from combiners._state import STATE_FORMAT, load_state, save_state
from combiners._voting import HardVote, SoftVote
from combiners._weighted import WeightedAverage, WeightedSum
from combiners.errors import (
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
)

__all__ = [
    "STATE_FORMAT",
    "BaseCombiner",
    "CombinerError",
    "Explanation",
    "HardVote",
    "Hedge",
    "InvalidCombinerClassError",
    "InvalidParameterError",
    "ModelCountError",
    "MultiTask",
    "NoModelsAvailableError",
    "NonFiniteError",
    "NotFittedError",
    "RegistrationError",
    "SelectBest",
    "ShapeError",
    "SoftVote",
    "Stacking",
    "StateError",
    "TargetError",
    "UnknownCombinerError",
    "UnknownParameterError",
    "WeightedAverage",
    "WeightedSum",
    "WeightsError",
    "available_combiners",
    "get_combiner",
    "load_state",
    "register",
    "resolve",
    "save_state",
]
