"""Build and fit the active strategy and the shadow strategies from config and the store.

Where a strategy's fitted state comes from (``strategy.fit`` in config):

- ``store``: the fitted artifact ``streamfuse train`` published under the strategy's name, used
  only when it was fitted on exactly the model versions being served;
- ``heldout``: refit at start (and after every hot reload) on the store's held-out set, the base
  models' outputs recomputed with the versions being served;
- ``auto`` (default): the artifact when it matches, else a refit on the held-out set.

A strategy fitted on other model versions than those served would weigh the wrong models, so it
is never used silently.

A strategy is a registered :class:`combiners.BaseCombiner` or a user's class named by dotted path
that need only have ``fit`` and ``combine`` (:class:`Combiner`). The worker uses more when a
strategy has it: ``explain`` and ``model_weights``, which every ``BaseCombiner`` has
(:class:`ExplainingCombiner`, :class:`WeightedCombiner`), and the online strategies'
``partial_fit`` (:class:`OnlineCombiner`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

import combiners
from combiners import Explanation
from model_store import (
    IntegrityError,
    ModelNotFoundError,
    ModelStore,
    ModelStoreError,
    StoredDataset,
)
from worker.batch.layout import OutputLayout
from worker.config import StrategyRef
from worker.errors import ConfigError
from worker.inference.models import ModelSet

__all__ = [
    "HELDOUT_DATASET",
    "Combiner",
    "CombinerClass",
    "ExplainingCombiner",
    "OnlineCombiner",
    "Strategy",
    "WeightedCombiner",
    "build_strategies",
    "heldout_name",
    "heldout_outputs",
    "resolve_strategies",
    "strategy_weights",
]

log = logging.getLogger("streamfuse.strategies")

HELDOUT_DATASET = "heldout"


class Combiner(Protocol):
    """What every strategy has: ``fit`` on held-out outputs, ``combine`` ``P`` of shape
    ``(n_models, n_events, n_outputs)`` into ``(n_events, n_outputs)``."""

    def fit(self, P: np.ndarray, y: np.ndarray) -> object: ...

    def combine(self, P: np.ndarray, *, available: np.ndarray | None = None) -> np.ndarray: ...


@runtime_checkable
class OnlineCombiner(Combiner, Protocol):
    """A strategy that learns from labelled batches (``hedge``, ``select_best``)."""

    def partial_fit(
        self, P: np.ndarray, y: np.ndarray, *, available: np.ndarray | None = None
    ) -> object: ...


@runtime_checkable
class ExplainingCombiner(Combiner, Protocol):
    """A strategy that can split its output into per-model contributions (or says None)."""

    def explain(
        self, P: np.ndarray, *, available: np.ndarray | None = None
    ) -> Explanation | None: ...


@runtime_checkable
class WeightedCombiner(Combiner, Protocol):
    """A strategy that can report a weight per model, shape ``(n_models,)`` (or says None)."""

    def model_weights(self) -> np.ndarray | None: ...


#: A strategy's class: called with the strategy's ``params`` as keywords.
CombinerClass = Callable[..., Combiner]


@dataclass
class Strategy:
    name: str
    ref: StrategyRef
    combiner: Combiner
    source: str  # "store vN" or "heldout"
    key: str  # config key, for messages

    @property
    def online(self) -> bool:
        return isinstance(self.combiner, OnlineCombiner)


def strategy_weights(strategies: Sequence[Strategy]) -> dict[str, list[float]]:
    """The per-model weights of every strategy that holds them (:class:`WeightedCombiner`);
    a user's strategy whose ``model_weights`` fails is left out, never stops the worker."""
    weights: dict[str, list[float]] = {}
    for strategy in strategies:
        combiner = strategy.combiner
        if not isinstance(combiner, WeightedCombiner):
            continue
        try:
            values = combiner.model_weights()
        except Exception as exc:
            log.debug("no weights from %s: %s", strategy.name, exc)
            continue
        if values is not None:
            weights[strategy.name] = [float(w) for w in values]
    return weights


def heldout_name(model_set: ModelSet) -> str:
    """The store's held-out set for this model set (multi-task sets have their own)."""
    return HELDOUT_DATASET + ("_multitask" if model_set.layout.is_multitask else "")


def heldout_outputs(store: ModelStore, model_set: ModelSet) -> tuple[np.ndarray, np.ndarray]:
    """``(P, y)`` on the store's held-out set with the served model versions.

    Multi-task model sets use ``heldout_multitask`` (targets of every task), the others
    ``heldout``; ``streamfuse train`` writes both.
    """
    data = store.load_dataset(heldout_name(model_set))
    X, y = checked_heldout(data, model_set.schema.n_features, model_set.layout)
    try:
        P = np.stack([fn(X) for fn in model_set.predict_fns])
    except Exception as exc:  # e.g. a value too large for a model's float32
        raise IntegrityError(
            data.name,
            data.version,
            "arrays.npz",
            f"the models cannot predict X ({exc})",
            kind="dataset",
        ) from exc
    return P, y


def checked_heldout(
    data: StoredDataset, n_features: int, layout: OutputLayout
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a stored held-out set, or the store's refusal naming its file: ``X``
    (n, n_features) numbers, ``y`` (n,) (multi-task: (n, n_tasks)), class indices within each
    classification block's classes, so no fit or predict trips over what the file holds."""

    def refuse(reason: str) -> IntegrityError:
        return IntegrityError(data.name, data.version, "arrays.npz", reason, kind="dataset")

    try:
        X, y = data.arrays["X"], data.arrays["y"]
    except KeyError as exc:
        raise refuse(f"has no {exc.args[0]!r} array") from None
    if X.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        raise refuse("X and y must hold numbers")
    if X.ndim != 2 or X.shape[1] != n_features or X.shape[0] == 0:
        raise refuse(f"X has shape {X.shape}, expected (n > 0, {n_features})")
    if np.isinf(X).any():
        raise refuse("X holds an infinite value")
    y2 = y[:, None] if y.ndim == 1 else y
    if y2.ndim != 2 or y2.shape != (X.shape[0], len(layout.blocks)):
        raise refuse(f"y has shape {y.shape} for X of shape {X.shape}")
    for j, block in enumerate(layout.blocks):
        column = y2[:, j].astype(np.float64)
        if not np.isfinite(column).all():
            raise refuse("y holds a value that is not finite")
        if block.kind == "classification" and not (
            np.array_equal(column, np.round(column))
            and column.min() >= 0
            and column.max() < block.n_outputs
        ):
            raise refuse(f"y holds a class index outside 0..{block.n_outputs - 1}")
    return np.asarray(X, dtype=np.float64), np.asarray(y)


def build_strategies(
    store: ModelStore,
    model_set: ModelSet,
    active: StrategyRef,
    shadows: Sequence[StrategyRef],
    refused: Callable[[str, str], None] | None = None,
) -> list[Strategy]:
    """The active strategy first, then the shadows, each fitted and ready to combine.

    A stored fit the store refuses (tampered, unsigned when required, naming something other
    than a registered combiner, unknown params) is logged and reported to ``refused(name,
    reason)`` before the strategy is refit on the held-out set (``fit: auto``) or start-up
    stops (``fit: store``).
    """
    refs = [("strategy", active)] + [(f"shadow_strategies.{i}", s) for i, s in enumerate(shadows)]
    classes = resolve_strategies(active, shadows)
    heldout: tuple[np.ndarray, np.ndarray] | None = None
    built = []
    for (key, ref), cls in zip(refs, classes, strict=True):
        strategy = _from_store(store, model_set, ref, key, refused)
        if strategy is None:
            if ref.fit == "store":
                raise ConfigError(
                    f"{key}.fit",
                    f"the store has no fitted {ref.name!r} for model "
                    f"versions {model_set.versions}; use fit: heldout (or auto) to refit",
                )
            if heldout is None:
                heldout = _load_heldout(store, model_set, key)
            strategy = fit_on_heldout(cls, ref, key, heldout, model_set.layout)
        log.info("strategy %s ready (%s)", ref.name, strategy.source)
        built.append(strategy)
    return built


def resolve_strategies(active: StrategyRef, shadows: Sequence[StrategyRef]) -> list[CombinerClass]:
    """The combiner class of each strategy, active first (a dotted path imports its module),
    or a :class:`ConfigError` naming the key; cheap, so start-up checks it before the models
    load."""
    refs = [("strategy", active)] + [(f"shadow_strategies.{i}", s) for i, s in enumerate(shadows)]
    classes: list[CombinerClass] = []
    for key, ref in refs:
        try:
            classes.append(combiners.resolve(ref.name))
        except combiners.CombinerError as exc:
            raise ConfigError(f"{key}.name", f"{exc}") from exc
    return classes


def fit_on_heldout(
    cls: CombinerClass,
    ref: StrategyRef,
    key: str,
    heldout: tuple[np.ndarray, np.ndarray],
    layout: OutputLayout | None = None,
) -> Strategy:
    P, y = heldout
    params = dict(ref.params)
    # A class named by dotted path need not subclass BaseCombiner, nor have its param_names.
    names: list[str] = getattr(cls, "param_names", lambda: [])()
    if layout is not None and layout.is_multitask and "tasks" not in names:
        # A single-task strategy over a multi-task model set works column by column: the
        # targets become one column per output (one-hot for classification tasks).
        y = per_column_targets(layout, y)
        params.setdefault("task", "regression")
    try:
        combiner = cls(**params)
        combiner.fit(P, y)
    except (combiners.CombinerError, TypeError, ValueError) as exc:
        raise ConfigError(f"{key}.params", f"{ref.name}: {exc}") from exc
    return Strategy(ref.name, ref, combiner, "heldout", key)


def per_column_targets(layout: OutputLayout, y: np.ndarray) -> np.ndarray:
    """(n, n_tasks) task targets to (n, n_outputs) column targets."""
    out = np.zeros((y.shape[0], layout.n_outputs))
    for j, block in enumerate(layout.blocks):
        if block.kind == "classification":
            idx = y[:, j].astype(np.int64)
            out[np.arange(len(idx)), block.start + idx] = 1.0
        else:
            out[:, block.start] = y[:, j]
    return out


def _load_heldout(
    store: ModelStore, model_set: ModelSet, key: str
) -> tuple[np.ndarray, np.ndarray]:
    try:
        return heldout_outputs(store, model_set)
    except ModelStoreError as exc:
        raise ConfigError(
            key,
            f"no fitted strategy matches the served model versions and the "
            f"store has no held-out set to refit on ({exc}); run streamfuse train",
        ) from exc


def _from_store(
    store: ModelStore,
    model_set: ModelSet,
    ref: StrategyRef,
    key: str,
    refused: Callable[[str, str], None] | None,
) -> Strategy | None:
    if ref.fit == "heldout":
        return None
    try:
        stored = store.load_strategy(ref.name)
    except ModelNotFoundError:
        return None
    except ModelStoreError as exc:
        _refuse(ref, key, f"{exc}", refused)
        return None
    if dict(stored.fitted_on) != model_set.versions:
        log.info(
            "stored %s v%s was fitted on %s, serving %s",
            ref.name,
            stored.version,
            dict(stored.fitted_on),
            model_set.versions,
        )
        return None
    stored_params = stored.meta.get("params", {})
    if not isinstance(stored_params, dict):
        _refuse(ref, key, f"stored v{stored.version}: params is not an object", refused)
        return None
    if ref.params and any(stored_params.get(k) != v for k, v in ref.params.items()):
        log.info("config params of %s differ from the stored fit; refitting", ref.name)
        return None
    # A class the config names by dotted path was imported on the config's say-so; a stored fit
    # may name it too. Registered names need no trust.
    trusted = [] if ":" not in ref.name else [combiners.resolve(ref.name)]
    try:
        combiner = combiners.load_state(stored.meta, stored.arrays, trusted=trusted)
        _probe(combiner, model_set)
    except Exception as exc:  # whatever a malformed stored fit trips over is a refusal
        _refuse(ref, key, f"stored v{stored.version}: {type(exc).__name__}: {exc}", refused)
        return None
    return Strategy(ref.name, ref, combiner, f"store v{stored.version}", key)


def _probe(combiner: Combiner, model_set: ModelSet) -> None:
    """Combine two events of even scores: a stored state that does not fit the served models
    (another number of models or outputs) fails here, not on every batch."""
    n_outputs = model_set.layout.n_outputs
    P = np.full((len(model_set.names), 2, n_outputs), 1.0 / n_outputs)
    out = np.asarray(combiner.combine(P))
    if out.shape != (2, n_outputs) or not np.isfinite(out).all():
        raise ValueError(f"combines to {out!r}, expected (2, {n_outputs}) finite numbers")


def _refuse(
    ref: StrategyRef, key: str, why: str, refused: Callable[[str, str], None] | None
) -> None:
    then = "start-up stops (fit: store)" if ref.fit == "store" else "refitting on the held-out set"
    log.error("refusing the stored fit of %s (%s): %s; %s", ref.name, key, why, then)
    if refused is not None:
        refused(ref.name, why)
