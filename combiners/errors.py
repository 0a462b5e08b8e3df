"""Exceptions raised by :mod:`combiners`.

Every exception derives from :class:`CombinerError`, so ``except CombinerError`` catches them
all; each leaf also subclasses the matching built-in, so code that expects ``ValueError`` or
``LookupError`` keeps working. Constructors take domain values and build the message, which
says what was expected and what came::

    CombinerError
    ├── UnknownCombinerError(LookupError)       unknown strategy name or dotted path
    ├── InvalidCombinerClassError(TypeError)    a user class without fit/combine
    ├── RegistrationError(ValueError)           bad or duplicate registered name
    ├── UnknownParameterError(TypeError)        a keyword the strategy does not take
    ├── InvalidParameterError(ValueError)       a parameter value out of its domain
    │   └── WeightsError                        wrong length, negative, all zero, non-finite
    ├── NotFittedError(ValueError, AttributeError)
    ├── ShapeError(ValueError)                  wrong ndim or size of P, y, X or available
    │   └── ModelCountError                     n_models differs from the one seen in fit
    ├── NonFiniteError(ValueError)              NaN or inf in P (available rows), y or X
    ├── TargetError(ValueError)                 y does not fit the task (class out of range)
    ├── NoModelsAvailableError(ValueError)      every model is masked out (or weighs zero)
    └── StateError(ValueError)                  save_state / load_state cannot proceed
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = [
    "CombinerError",
    "InvalidCombinerClassError",
    "InvalidParameterError",
    "ModelCountError",
    "NoModelsAvailableError",
    "NonFiniteError",
    "NotFittedError",
    "RegistrationError",
    "ShapeError",
    "StateError",
    "TargetError",
    "UnknownCombinerError",
    "UnknownParameterError",
    "WeightsError",
]


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


class CombinerError(Exception):
    """Root of every error raised by :mod:`combiners`."""


class UnknownCombinerError(CombinerError, LookupError):
    """No strategy is registered under ``name`` (or a dotted path does not import)."""

    def __init__(self, name: str, known: Sequence[str], reason: str | None = None) -> None:
        self.name = name
        self.known = sorted(known)
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"unknown combiner {name!r}{detail}. Known: {', '.join(self.known)}; "
            "or give a dotted path 'package.module:Class'." + _did_you_mean(name, self.known)
        )


class InvalidCombinerClassError(CombinerError, TypeError):
    """A class named by dotted path lacks the combiner interface."""

    def __init__(self, path: str, missing: Sequence[str]) -> None:
        self.path = path
        self.missing = list(missing)
        super().__init__(
            f"{path!r} is not a combiner: expected a class with methods fit and combine, "
            f"missing {', '.join(self.missing)}"
        )


class RegistrationError(CombinerError, ValueError):
    """A name cannot be registered (not snake_case, or already taken)."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        super().__init__(f"cannot register combiner {name!r}: {problem}")


class UnknownParameterError(CombinerError, TypeError):
    """A keyword that the strategy's constructor does not take."""

    def __init__(self, combiner: str, param: str, known: Sequence[str]) -> None:
        self.combiner = combiner
        self.param = param
        super().__init__(
            f"{combiner} takes no parameter {param!r}; its parameters are "
            f"{', '.join(sorted(known)) or '(none)'}." + _did_you_mean(param, known)
        )


class InvalidParameterError(CombinerError, ValueError):
    """A parameter value outside its domain."""

    def __init__(self, combiner: str, param: str, expected: str, got: object) -> None:
        self.combiner = combiner
        self.param = param
        super().__init__(f"{combiner}: parameter {param!r} must be {expected}, got {got!r}")


class WeightsError(InvalidParameterError):
    """Weights of the wrong length, negative, all zero or non-finite."""


class NotFittedError(CombinerError, ValueError, AttributeError):
    """The combiner was used before ``fit`` (like scikit-learn's ``NotFittedError``)."""

    def __init__(self, combiner: str, method: str = "combine") -> None:
        self.combiner = combiner
        super().__init__(
            f"this {combiner} is not fitted yet: call fit(P, y) before {method}(), "
            "or restore it with load_state"
        )


class ShapeError(CombinerError, ValueError):
    """An array has the wrong number of dimensions or the wrong size."""

    def __init__(self, what: str, expected: str, got: object) -> None:
        self.what = what
        super().__init__(f"{what}: expected {expected}, got {got}")


class ModelCountError(ShapeError):
    """``P`` holds a different number of models than the combiner was fitted with."""

    def __init__(self, expected: int, got: int) -> None:
        self.expected = expected
        self.got = got
        super().__init__("P", f"{expected} models (as in fit) along axis 0", f"{got} models")


class NonFiniteError(CombinerError, ValueError):
    """NaN or infinity where finite numbers are required."""

    def __init__(self, what: str, n_bad: int, n_total: int) -> None:
        self.what = what
        self.n_bad = n_bad
        super().__init__(
            f"{what}: expected finite values, got {n_bad} NaN/inf of {n_total} "
            "(mark failed models with available=... instead)"
            if what.startswith("P")
            else f"{what}: expected finite values, got {n_bad} NaN/inf of {n_total}"
        )


class TargetError(CombinerError, ValueError):
    """``y`` does not fit the task (class index out of range, non-integer labels, ...)."""

    def __init__(self, combiner: str, expected: str, got: object) -> None:
        self.combiner = combiner
        super().__init__(f"{combiner}: y must hold {expected}, got {got}")


class NoModelsAvailableError(CombinerError, ValueError):
    """Every model is masked out by ``available`` (or the available ones all weigh zero)."""

    def __init__(
        self, combiner: str, n_models: int, reason: str = "available is all False"
    ) -> None:
        self.combiner = combiner
        super().__init__(
            f"{combiner}: at least one of the {n_models} models must be available, but {reason}"
        )


class StateError(CombinerError, ValueError):
    """Fitted state cannot be saved or restored."""

    def __init__(self, combiner: str, problem: str) -> None:
        self.combiner = combiner
        super().__init__(f"{combiner}: {problem}")
