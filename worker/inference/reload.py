"""Hot reload: serve a newly promoted model version without stopping or losing a batch.

Every ``reload.interval_s`` :meth:`Reloader.check` looks for promotions of the models not pinned
in config, loads each candidate, checks it against the served set and on a probe batch (the
last good batch's features, else the store's held-out set), refits the strategies for the new
versions and returns a new :class:`~worker.inference.serving.Serving` snapshot. The caller swaps
it in between batches; a batch already running finishes with the snapshot it started with. A
candidate that fails any step is refused (counted and logged) and the old version keeps
serving; a version refused at load is not retried until another one is promoted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from model_store import LoadedModel, ModelStore
from worker.config import Settings
from worker.inference.models import Promotion
from worker.inference.serving import Serving, build_serving
from worker.inference.strategies import heldout_name
from worker.metrics import Metrics

__all__ = ["Reloader"]

log = logging.getLogger("streamfuse.worker")

PROBE_ROWS = 64


class Reloader:
    def __init__(
        self,
        store: ModelStore,
        settings: Settings,
        metrics: Metrics,
        relayout: Callable[[Serving], str | None] | None = None,
    ) -> None:
        self.store = store
        # output.format: why a new snapshot cannot be published (refused and counted), or None
        self.relayout = relayout
        self.settings = settings
        self.metrics = metrics
        self._next_check = 0.0
        self._refused: set[Promotion] = set()

    def check(self, serving: Serving, probe: np.ndarray | None) -> Serving | None:
        """A new snapshot when a promotion was loaded and swapped in, else None."""
        if not self.settings.reload.enabled:
            return None
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.settings.reload.interval_s
        current = serving
        try:
            promotions = current.model_set.pending_promotions()
        except Exception as exc:  # a hostile or broken store must never end the worker
            log.error("cannot look for promotions in the store: %s", exc)
            return None
        for promotion in promotions:
            if promotion in self._refused:
                continue
            candidate = self._load(current, promotion, probe)
            if candidate is None:
                continue
            try:
                swapped = build_serving(
                    self.store,
                    self.settings,
                    current.model_set.replaced(candidate),
                    refused=self._strategy_refused,
                )
            except Exception as exc:  # any failure to refit keeps the old version serving
                self._refuse(promotion, f"strategies cannot be refit: {exc}")
                continue
            refused = self.relayout(swapped) if self.relayout is not None else None
            if refused is not None:
                self._refuse(promotion, refused)
                self._refused.add(promotion)  # not retried on every check
                continue
            self.metrics.set_model_version(
                promotion.model, candidate.version, promotion.old_version
            )
            self.metrics.model_reloads.labels(promotion.model, "swapped").inc()
            log.info(
                "hot reload: %s v%d -> v%d",
                promotion.model,
                promotion.old_version,
                candidate.version,
            )
            current = swapped
        return None if current is serving else current

    def _load(
        self, serving: Serving, promotion: Promotion, probe: np.ndarray | None
    ) -> LoadedModel | None:
        if probe is None:
            probe = self._heldout_probe(serving)
        try:
            return serving.model_set.load_candidate(promotion, probe)
        except Exception as exc:  # any failure of a candidate is a refusal, never a crash
            self._refuse(promotion, f"{type(exc).__name__}: {exc}")
            self._refused.add(promotion)  # not retried on every check
            return None

    def _strategy_refused(self, name: str, why: str) -> None:
        self.metrics.stored_strategies_refused.labels(name).inc()

    def _refuse(self, promotion: Promotion, why: str) -> None:
        self.metrics.model_reloads.labels(promotion.model, "refused").inc()
        log.error(
            "refusing %s v%d, still serving v%d: %s",
            promotion.model,
            promotion.new_version,
            promotion.old_version,
            why,
        )

    def _heldout_probe(self, serving: Serving) -> np.ndarray:
        """A probe batch for a promoted model before any good batch was seen."""
        try:
            data = self.store.load_dataset(heldout_name(serving.model_set))
            return np.asarray(data.arrays["X"][:PROBE_ROWS], dtype=np.float64)
        except Exception:  # no usable held-out set: zeros still check the output shape
            return np.zeros((8, serving.schema.n_features))
