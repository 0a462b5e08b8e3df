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

__all__ = ["available_combiners", "get_combiner", "lookup_registered", "register", "resolve"]

_REGISTRY: dict[str, type[BaseCombiner]] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``package.module:Class`` (the class part may be dotted), checked before any import.
DOTTED_PATH = re.compile(rf"{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*")

C = TypeVar("C", bound=type[BaseCombiner])


def register(name: str) -> Callable[[C], C]:
    """Class decorator registering a :class:`BaseCombiner` subclass under snake_case ``name``.

    Usage::

        @register("first_model")
        class FirstModel(BaseCombiner):
            def fit(self, P, y, X=None): ...
            def combine(self, P, X=None, available=None): ...
    """

    if not isinstance(name, str) or not _NAME.fullmatch(name):
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


def lookup_registered(name: object) -> type[BaseCombiner]:
    """The class registered under ``name``; never imports anything.

    This is the only lookup for names read from stored artifacts: a store writer must not
    choose code to import.

    Raises
    ------
    UnknownCombinerError
        ``name`` is not a registered name (dotted paths included).
    """
    if isinstance(name, str) and name in _REGISTRY:
        return _REGISTRY[name]
    raise UnknownCombinerError(
        repr(name) if not isinstance(name, str) else name,
        list(_REGISTRY),
        reason="stored strategies may only name registered combiners"
        if isinstance(name, str) and ":" in name
        else None,
    )


def resolve(name: str) -> type[Any]:
    """The class for a registered ``name`` or a dotted path ``"package.module:Class"``.

    For names from the configuration (trusted input: importing a module runs its code).
    A dotted path must match ``package.module:Class`` (identifiers separated by dots, no
    dunder parts such as ``__main__``) before anything is imported; any error while
    importing becomes an :class:`UnknownCombinerError`. A user class must provide ``fit``
    and ``combine``; it need not subclass :class:`BaseCombiner` (but only subclasses
    support :func:`combiners.save_state`).

    Raises
    ------
    UnknownCombinerError
        The name is not registered, not of the dotted form, or does not import.
    InvalidCombinerClassError
        The dotted path names something that is not a class with ``fit``/``combine``.
    """
    if not isinstance(name, str):
        raise UnknownCombinerError(repr(name), list(_REGISTRY), reason="not a string")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" not in name:
        raise UnknownCombinerError(name, list(_REGISTRY))
    if not DOTTED_PATH.fullmatch(name) or any(
        part.startswith("__") and part.endswith("__") for part in re.split(r"[.:]", name)
    ):
        raise UnknownCombinerError(
            name, list(_REGISTRY), reason="a dotted path has the form 'package.module:Class'"
        )
    try:
        obj = import_object(name)
    except Exception as exc:  # anything the module's own code raises while importing
        raise UnknownCombinerError(
            name, list(_REGISTRY), reason=f"{type(exc).__name__}: {exc}"
        ) from exc
    except SystemExit as exc:  # e.g. a package's __main__-style module; the worker lives on
        raise UnknownCombinerError(name, list(_REGISTRY), reason="importing it exits") from exc
    missing = [m for m in ("fit", "combine") if not callable(getattr(obj, m, None))]
    if not isinstance(obj, type) or missing:
        raise InvalidCombinerClassError(name, missing or ["(not a class)"])
    return obj


def import_object(path: str) -> Any:
    """Import ``"package.module:Attr"`` (``Attr`` may be dotted); raises ImportError et al."""
    module_name, sep, attr = path.partition(":")
    if not sep or not DOTTED_PATH.fullmatch(path):
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
