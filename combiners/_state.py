"""Fitted state without pickle: ``save_state`` to (JSON meta, numpy arrays), ``load_state`` back."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from combiners._base import BaseCombiner
from combiners._registry import lookup_registered, resolve
from combiners.errors import CombinerError, StateError, UnknownParameterError

__all__ = ["STATE_FORMAT", "load_state", "save_state"]

#: ``meta["format"]``; bump the version when the layout changes.
STATE_FORMAT = "streamfuse.combiner/1"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def save_state(combiner: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a fitted combiner into JSON-serialisable ``meta`` and numpy ``arrays``.

    ``meta`` is ``{"format": "streamfuse.combiner/1", "name": <registered name or
    "module:Class">, "params": <constructor parameters>, "fitted": <fitted scalars>}``;
    ``arrays`` maps fitted attribute names to arrays (safetensors-compatible). Online state
    (rolling windows, Hedge log-weights) is included, so learning resumes after a restart.

    Raises
    ------
    NotFittedError
        The combiner is not fitted.
    StateError
        It is not a BaseCombiner, or holds something that cannot be saved without pickle.

    Examples
    --------
    >>> import numpy as np
    >>> from combiners import get_combiner, load_state, save_state
    >>> P = np.array([[[0.8, 0.2]], [[0.4, 0.6]]])
    >>> meta, arrays = save_state(get_combiner("soft_vote", weights=[3, 1]).fit(P, [0]))
    >>> meta["format"], meta["name"], meta["params"]
    ('streamfuse.combiner/1', 'soft_vote', {'weights': [3, 1], 'task': None})
    >>> meta["fitted"], sorted(arrays)
    ({'n_models_': 2, 'n_outputs_': 2, 'task_': 'classification'}, ['weights_'])
    >>> load_state(meta, arrays).combine(P)
    array([[0.7, 0.3]])
    """
    if not isinstance(combiner, BaseCombiner):
        raise StateError(type(combiner).__name__, "save_state needs a BaseCombiner subclass")
    scalars, arrays = combiner._get_state()
    cls = type(combiner)
    registered = bool(cls.name) and _resolves_to(cls.name, cls)
    name = cls.name if registered else f"{cls.__module__}:{cls.__qualname__}"
    meta = {
        "format": STATE_FORMAT,
        "name": name,
        "params": _jsonable(combiner.get_params()),
        "fitted": _jsonable(scalars),
    }
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StateError(
            cls.__name__, f"parameters or state are not JSON-serialisable: {exc}"
        ) from exc
    return meta, arrays


def _resolves_to(name: str, cls: type) -> bool:
    try:
        return resolve(name) is cls
    except LookupError:
        return False


def _dotted(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def load_state(  # noqa: C901 (one check per stored field of an untrusted file, read top to bottom)
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    *,
    trusted: Iterable[type] = (),
) -> BaseCombiner:
    """Rebuild a fitted combiner from :func:`save_state`'s ``meta`` and ``arrays``.

    ``meta`` usually comes from a store, so nothing in it chooses code: its ``name`` must be
    a registered combiner, or the ``"module:Class"`` name of one of the ``trusted`` classes
    (user classes the caller already resolved from its own configuration). Nothing is
    imported here. ``params`` must be the class's own parameter names with valid values.

    Raises
    ------
    StateError
        Unknown format, missing or malformed keys or arrays, or state that does not fit.
    UnknownCombinerError
        ``meta["name"]`` is not registered (nor a trusted class).
    UnknownParameterError, InvalidParameterError
        ``meta["params"]`` holds a name the class does not take, or a bad value.
    """
    if not isinstance(meta, Mapping):
        raise StateError("load_state", f"meta must be a mapping, got {type(meta).__name__}")
    if meta.get("format") != STATE_FORMAT:
        raise StateError(
            "load_state", f"expected format {STATE_FORMAT!r}, got {meta.get('format')!r}"
        )
    try:
        name, params, fitted = meta["name"], meta["params"], meta["fitted"]
    except KeyError as exc:
        raise StateError("load_state", f"meta lacks key {exc}") from exc
    by_path = {_dotted(cls): cls for cls in trusted}
    if isinstance(name, str) and name in by_path:
        cls: type = by_path[name]
    else:
        cls = lookup_registered(name)
    if not (isinstance(cls, type) and issubclass(cls, BaseCombiner)):
        raise StateError(str(name), "load_state needs a BaseCombiner subclass")
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise StateError(cls.__name__, "params must be an object of named parameters")
    if not isinstance(fitted, dict):
        raise StateError(cls.__name__, "fitted must be an object")
    known = cls.param_names()
    for key in params:
        if key not in known:
            raise UnknownParameterError(cls.__name__, key, known)
    clean_arrays: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        array = np.asarray(value)
        if not isinstance(key, str) or array.dtype.hasobject:
            raise StateError(cls.__name__, f"array {key!r} is not a named numeric array")
        clean_arrays[key] = array
    try:
        combiner = cls(**params)
        combiner.validate_params()
        combiner._set_state(dict(fitted), clean_arrays)
    except CombinerError:
        raise
    except Exception as exc:  # a stored value of the wrong type deep in a constructor
        raise StateError(cls.__name__, f"stored state does not fit: {exc}") from exc
    return combiner
