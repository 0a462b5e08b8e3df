"""What every format's publish shares: the input schema, classes, scores and output kind.

Everything the worker relies on is checked at publish time, once, by the model's format
(:mod:`model_store._formats`) with these helpers: the input schema agrees with the model,
classes are the model's own, the output width is known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import PublishError

__all__ = [
    "checked_input_schema",
    "checked_output_kind",
    "jsonable_classes",
    "jsonable_scores",
    "name_difference",
    "no_spec",
]

#: A loaded model's prediction: ``X (n_events, n_features) -> (n_events, n_outputs)``.
Predictor = Callable[[np.ndarray], np.ndarray]

_OUTPUT_KIND = {"classification": "proba", "regression": "value", "multitask": "mixed"}


def jsonable_classes(name: str, classes: Sequence[Any]) -> list[Any]:
    """Class labels as JSON scalars (numpy scalars unwrapped); must be unique."""
    out = [c.item() if isinstance(c, np.generic) else c for c in classes]
    for c in out:
        if not isinstance(c, str | int | float | bool):
            raise PublishError(name, f"class label {c!r} is not a JSON scalar")
    if len(set(out)) != len(out):
        raise PublishError(name, f"class labels are not unique: {out}")
    return out


def jsonable_scores(name: str, scores: Mapping[str, Any] | None) -> dict[str, float]:
    """Held-out scores as ``{metric: float}``."""
    try:
        return {str(k): float(v) for k, v in (scores or {}).items()}
    except (TypeError, ValueError) as exc:
        raise PublishError(name, f"scores must map metric names to numbers: {exc}") from exc


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def name_difference(given: list[str], own: list[str]) -> str:
    """How the given feature names differ from the model's own: the names one side lacks,
    or (same names, another order) the first position where they differ; "" if equal."""
    given_set, own_set = set(given), set(own)
    missing = [n for n in own if n not in given_set]
    extra = [n for n in given if n not in own_set]
    parts = [f"missing {_listed(missing)}"] if missing else []
    parts += [f"not the model's {_listed(extra)}"] if extra else []
    if not parts:
        for i, (g, o) in enumerate(zip(given, own, strict=False)):
            if g != o:
                return f"the same names in another order: position {i} is {g!r}, the model's {o!r}"
        return ""
    return "; ".join(parts)


def checked_input_schema(
    name: str,
    given: Mapping[str, Any] | None,
    n_features: int | None,
    feature_names: list[str] | None,
) -> dict[str, Any]:
    """The manifest's ``input_schema`` from the given one and what the model says of itself
    (``n_features``, its own ``feature_names``); refusals say what differs in user words."""
    if given is not None:
        unknown = set(given) - {"n_features", "feature_names"}
        if unknown:
            raise PublishError(name, f"unknown input_schema keys {sorted(unknown)}")
        names = given.get("feature_names")
        if n_features is not None and given.get("n_features", n_features) != n_features:
            if isinstance(names, list | tuple):
                problem = f"the model takes {n_features} features, the feature names given "
                problem += f"(--feature-names) name {len(names)}"
                if feature_names is not None:
                    problem += f": {name_difference([str(n) for n in names], feature_names)}"
            else:
                problem = f"the model takes {n_features} features, {given['n_features']} "
                problem += "were declared (--features)"
            raise PublishError(name, problem)
        if names is not None and feature_names is not None:
            difference = name_difference([str(n) for n in names], [str(n) for n in feature_names])
            if difference:
                raise PublishError(
                    name,
                    f"the feature names given (--feature-names) are not the model's own "
                    f"{len(feature_names)}: {difference}",
                )
        n_features = given.get("n_features", n_features)
        feature_names = names if names is not None else feature_names
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise PublishError(name, f"input_schema needs a positive n_features, got {n_features!r}")
    if feature_names is not None:
        feature_names = [str(f) for f in feature_names]
        if len(feature_names) != n_features or len(set(feature_names)) != n_features:
            raise PublishError(
                name,
                f"the model takes {n_features} features: give {n_features} unique "
                f"feature_names, not {len(feature_names)} ({len(set(feature_names))} unique)",
            )
    return {"n_features": n_features, "feature_names": feature_names}


def checked_output_kind(name: str, task: str, given: str | None) -> str:
    expected = _OUTPUT_KIND[task]
    if given is not None and given != expected:
        raise PublishError(name, f"output_kind {given!r} does not fit task {task!r}")
    return expected


def no_spec(name: str, spec: Mapping[str, Any] | None) -> None:
    """Refuse an architecture spec given for a framework that has none."""
    if spec is not None:
        raise PublishError(name, "spec is for torch models only")
