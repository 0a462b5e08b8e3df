"""Hot reload: serve a newly promoted model version without stopping or losing a batch.

Every ``reload.interval_s`` :meth:`Reloader.check` starts a preparation on a thread of its
own: it looks for promotions of the models not pinned in config, loads each candidate (first
tried in a child process within ``store.limits``, :meth:`ModelStore.load_bounded`), checks it
against the served set and on a probe batch (the last good batch's features, else the store's
held-out set), compares its outputs on the rows recorded at publish with those recorded then,
refits the strategies for the new versions and runs the new snapshot once at every batch size
the worker uses (:func:`~worker.inference.warm.warm`, ``streamfuse_model_warmup_seconds``):
its cold first calls are paid before it serves. The loop keeps serving the old
snapshot meanwhile: a later :meth:`~Reloader.check`, between batches, returns the new
:class:`~worker.inference.serving.Serving` once it is ready and the caller swaps it in; a
batch already running finishes with the snapshot it started with. A candidate that fails any
step is refused (counted and logged) and the old version keeps serving; a version refused at
load is not retried until another one is promoted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model_store import LoadedModel, ModelStore
from worker.config import Settings
from worker.inference.models import Promotion
from worker.inference.serving import Serving, build_serving
from worker.inference.warm import first_rows, warm
from worker.metrics import Metrics

__all__ = ["Reloader"]

log = logging.getLogger("streamfuse.worker")


@dataclass(frozen=True)
class _Prepared:
    """A snapshot prepared from ``base``, with the promotions it serves."""

    base: Serving
    serving: Serving
    swapped: list[tuple[Promotion, int]]


class Reloader:
    def __init__(
        self,
        store: ModelStore,
        settings: Settings,
        metrics: Metrics,
        relayout: Callable[[Serving], str | None] | None = None,
        synthetic: np.ndarray | None = None,
    ) -> None:
        self.store = store
        self.synthetic = synthetic  # rows from the reference profile (first_rows)
        # output.format: why a new snapshot cannot be published (refused and counted), or None
        self.relayout = relayout
        self.settings = settings
        self.metrics = metrics
        self._next_check = 0.0
        self._refused: set[Promotion] = set()
        self._lock = threading.Lock()
        self._job: threading.Thread | None = None
        self._ready: _Prepared | None = None

    def check(self, serving: Serving, probe: np.ndarray | None) -> Serving | None:
        """A new snapshot to swap in when one is ready, else None (never waits for one).

        A snapshot prepared from another than ``serving`` (a promotion decision swapped the
        served set meanwhile) is dropped and prepared again from ``serving``.
        """
        if not self.settings.reload.enabled:
            return None
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            if ready.base is serving:
                # On the loop's thread, at the swap: the output schema moves with the snapshot.
                refused = self.relayout(ready.serving) if self.relayout is not None else None
                if refused is None:
                    self._announce(ready)
                    return ready.serving
                for promotion, _ in ready.swapped:
                    self._refuse(promotion, refused)
                    self._refused.add(promotion)  # not retried on every check
                return None
            self._next_check = 0.0
        if self._job is not None and self._job.is_alive():
            return None
        now = time.monotonic()
        if now < self._next_check:
            return None
        self._next_check = now + self.settings.reload.interval_s
        self._job = threading.Thread(
            target=self._prepare,
            args=(serving, None if probe is None else np.array(probe, copy=True)),
            name="streamfuse-reload",
            daemon=True,  # a trial child's wall-clock limit bounds it; never holds up exit
        )
        self._job.start()
        return None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the preparation under way (if any); whether none is left running."""
        job = self._job
        if job is not None:
            job.join(timeout)
        return job is None or not job.is_alive()

    def _prepare(self, serving: Serving, probe: np.ndarray | None) -> None:
        try:
            prepared = self._build(serving, probe)
        except Exception as exc:  # the thread must end quietly: the old snapshot serves on
            log.error("hot reload failed: %s", exc)
            return
        if prepared is not None:
            with self._lock:
                self._ready = prepared

    def _build(self, serving: Serving, probe: np.ndarray | None) -> _Prepared | None:
        current = serving
        try:
            promotions = current.model_set.pending_promotions()
        except Exception as exc:  # a hostile or broken store must never end the worker
            log.error("cannot look for promotions in the store: %s", exc)
            return None
        swapped: list[tuple[Promotion, int]] = []
        for promotion in promotions:
            if promotion in self._refused:
                continue
            if probe is None:
                probe = first_rows(self.store, serving, self.synthetic)
            candidate = self._load(current, promotion, probe)
            if candidate is None:
                continue
            before = current
            try:
                current = build_serving(
                    self.store,
                    self.settings,
                    current.model_set.replaced(candidate),
                    refused=self._strategy_refused,
                )
            except Exception as exc:  # any failure to refit keeps the old version serving
                self._refuse(promotion, f"strategies cannot be refit: {exc}")
                continue
            if self.settings.reload.warmup:
                try:
                    seconds = warm(current, probe, self.settings, promotion.model)
                except Exception as exc:
                    self._refuse(promotion, f"cannot predict at the worker's batch sizes: {exc}")
                    self._refused.add(promotion)
                    current = before
                    continue
                self.metrics.model_warmup.labels(promotion.model).set(seconds)
                log.info(
                    "hot reload: %s v%d warmed in %.3f s",
                    promotion.model,
                    candidate.version,
                    seconds,
                )
            else:
                log.info(
                    "hot reload: %s v%d not warmed (reload.warmup is off)",
                    promotion.model,
                    candidate.version,
                )
            swapped.append((promotion, candidate.version))
        return _Prepared(serving, current, swapped) if swapped else None

    def _announce(self, prepared: _Prepared) -> None:
        for promotion, version in prepared.swapped:
            self.metrics.set_model_version(promotion.model, version, promotion.old_version)
            self.metrics.model_reloads.labels(promotion.model, "swapped").inc()
            log.info("hot reload: %s v%d -> v%d", promotion.model, promotion.old_version, version)

    def _load(
        self, serving: Serving, promotion: Promotion, probe: np.ndarray
    ) -> LoadedModel | None:
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
