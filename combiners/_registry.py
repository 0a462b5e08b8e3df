"""Strategies by name: ``register``, ``resolve``, ``get_combiner``, ``available_combiners``."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

from combiners._base import BaseCombiner
from combiners.errors import (
    InvalidCombinerClassError,
    RegistrationError,
    UnknownCombinerError,
    UnknownParameterError,
)

__all__ = ["available_combiners", "get_combiner", "register", "resolve"]

_REGISTRY: dict[str, type[BaseCombiner]] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

C = TypeVar("C", bound=type[BaseCombiner])


def register(name: str) -> Callable[[C], C]:
    """Class decorator registering a :class:`BaseCombiner` subclass under snake_case ``name``.

    Usage::

        @register("first_model")
        class FirstModel(BaseCombiner):
            def fit(self, P, y, X=None): ...
            def combine(self, P, X=None, available=None): ...
    """

    if not _NAME.match(name):
        raise RegistrationError(name, "names are snake_case: lowercase letters, digits, '_'")

    def decorate(cls: C) -> C:
        if not (isinstance(cls, type) and issubclass(cls, BaseCombiner)):
            raise RegistrationError(name, f"{cls!r} is not a BaseCombiner subclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise RegistrationError(name, f"already taken by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available_combiners() -> list[str]:
    """Sorted names of the registered strategies."""
    return sorted(_REGISTRY)


def resolve(name: str) -> type[Any]:
    """The class for a registered ``name`` or a dotted path ``"package.module:Class"``.

    A user class must provide ``fit`` and ``combine``; it need not subclass
    :class:`BaseCombiner` (but only subclasses support :func:`combiners.save_state`).

    Raises
    ------
    UnknownCombinerError
        The name is not registered, or the dotted path does not import.
    InvalidCombinerClassError
        The dotted path names something without ``fit``/``combine``.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" not in name:
        raise UnknownCombinerError(name, list(_REGISTRY))
    try:
        obj = import_object(name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UnknownCombinerError(name, list(_REGISTRY), reason=str(exc)) from exc
    missing = [m for m in ("fit", "combine") if not callable(getattr(obj, m, None))]
    if not isinstance(obj, type) or missing:
        raise InvalidCombinerClassError(name, missing or ["(not a class)"])
    return obj


def import_object(path: str) -> Any:
    """Import ``"package.module:Attr"`` (``Attr`` may be dotted); raises ImportError et al."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'package.module:Class', got {path!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def get_combiner(name: str, **params: Any) -> Any:
    """Build the strategy ``name`` (registered or dotted path) with keyword ``params``.

    Parameters that can be checked without data (``task``, ``k``, ``eta``, weight values, ...)
    are checked here, so a bad configuration fails at start-up.

    Examples
    --------
    >>> from combiners import get_combiner
    >>> get_combiner("soft_vote", weights=[1, 2])
    SoftVote(weights=[1, 2], task=None)
    >>> get_combiner("soft_vot")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    combiners.errors.UnknownCombinerError: unknown combiner 'soft_vot'...Did you mean 'soft_vote'?
    """
    cls = resolve(name)
    if isinstance(cls, type) and issubclass(cls, BaseCombiner):
        known = cls.param_names()
        for key in params:
            if key not in known:
                raise UnknownParameterError(cls.__name__, key, known)
        combiner = cls(**params)
        combiner.validate_params()
        return combiner
    return cls(**params)
