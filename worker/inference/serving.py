"""One serving snapshot: the models and the strategies fitted on exactly those versions.

:func:`build_serving` is the one place that turns config and store into what is served, for
the worker, ``streamfuse replay`` and the bench. A batch captures the snapshot it started with
(:class:`worker.inference.pipeline.InFlight`), so a hot reload builds a new snapshot and swaps it
in between batches without touching a batch already running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from model_store import ModelStore
from worker.batch.decode import Schema
from worker.batch.layout import OutputLayout
from worker.config import Settings
from worker.inference.models import ModelSet, PredictFn
from worker.inference.store import open_store
from worker.inference.strategies import Strategy, build_strategies, resolve_strategies

__all__ = ["Serving", "build_serving", "open_store"]


@dataclass(frozen=True)
class Serving:
    """Immutable: base models in config order, the active strategy first, then the shadows."""

    model_set: ModelSet
    strategies: tuple[Strategy, ...]

    @property
    def active(self) -> Strategy:
        return self.strategies[0]

    @property
    def shadows(self) -> tuple[Strategy, ...]:
        return self.strategies[1:]

    @property
    def names(self) -> list[str]:
        return self.model_set.names

    @property
    def versions(self) -> dict[str, int]:
        return self.model_set.versions

    @property
    def layout(self) -> OutputLayout:
        return self.model_set.layout

    @property
    def schema(self) -> Schema:
        return self.model_set.schema

    @property
    def predict_fns(self) -> list[PredictFn]:
        return self.model_set.predict_fns

    def with_active(self, name: str) -> Serving:
        """The same snapshot with strategy ``name`` active and the others (the old active
        one included) as shadows, in their order (champion/challenger promotion)."""
        chosen = [s for s in self.strategies if s.name == name]
        if not chosen:
            raise KeyError(name)
        rest = tuple(s for s in self.strategies if s.name != name)
        return Serving(self.model_set, (chosen[0], *rest))


def build_serving(
    store: ModelStore,
    settings: Settings,
    model_set: ModelSet | None = None,
    refused: Callable[[str, str], None] | None = None,
) -> Serving:
    """Load the configured models (or take ``model_set``) and build every strategy for them.

    ``refused(name, reason)`` hears of each stored strategy fit the store refused (it is refit).

    Raises
    ------
    ConfigError
        A model cannot be loaded or disagrees with the others, or a strategy cannot be built.
    """
    if model_set is None:
        resolve_strategies(settings.strategy, settings.shadow_strategies)  # before the models
        model_set = ModelSet(store, settings.models, settings.runtime.model_threads)
    strategies = build_strategies(
        store, model_set, settings.strategy, settings.shadow_strategies, refused
    )
    return Serving(model_set, tuple(strategies))
