"""A rollout in the worker: serve the step in force, gather both arms' evidence, move the step.

Every :data:`READ_INTERVAL_S` :meth:`Rollout.between_batches` reads the group's rollout pointer
(``_rollouts/<kafka.group_id>/``, one small read) and follows it: while the rollout runs or is
paused the pipeline gets the candidate's :class:`~worker.inference.candidate.Arms` at the
step's share, built from the snapshot served (again after a hot reload); rolled back or aborted,
none (share 0). Every published batch's two arms are kept by id (:meth:`delivered`) and joined
to the labels as they come (:meth:`joined`) into paired evidence for the step; then
:func:`~worker.accuracy.gates.judge` decides, and a move is published compare-and-set against
the state read: of two workers deciding at once, one wins and the other adopts its record.

``done`` with a model candidate promotes that version in the store, which hot reload then
serves as the champion (the arms end once it does); a strategy candidate keeps serving every
key as the candidate until the config makes it the active strategy.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from model_store import ConflictError, ModelStore, ModelStoreError, StoredRollout
from worker.accuracy.gates import Gates, Vitals, judge, new_evidence
from worker.accuracy.labels import Joined
from worker.accuracy.store import RowStore
from worker.config import Settings
from worker.inference.candidate import Arms
from worker.inference.models import Promotion
from worker.inference.pipeline import BatchResult, Pipeline
from worker.inference.serving import Serving, build_serving
from worker.inference.warm import first_rows, warm
from worker.metrics import Metrics
from worker.service.rollout_record import moved, reaches_last, share_of

__all__ = ["READ_INTERVAL_S", "Rollout"]

log = logging.getLogger("streamfuse.worker")

READ_INTERVAL_S = 1.0
_LATENCY_BATCHES = 1000  # the candidate's p99 over its last batches at the step


class Rollout:
    def __init__(
        self,
        store: ModelStore,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        interval_s: float = READ_INTERVAL_S,
        synthetic: np.ndarray | None = None,
    ) -> None:
        self.store = store
        self.synthetic = synthetic  # rows from the reference profile (first_rows)
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.interval_s = interval_s
        self.name = settings.kafka.group_id
        self.origin = f"{settings.kafka.group_id}/{settings.kafka.instance_id}"
        self.stored: StoredRollout | None = None
        self.arms: Arms | None = None
        self._arms_for: dict[str, Any] | None = None  # the candidate the arms were built for
        self._job: threading.Thread | None = None  # loading a candidate version
        self._done: tuple[Serving, dict[str, Any], Serving | Exception] | None = None
        self.waiting = ""  # what the step waits for, as the gates said last
        self._loaded: dict[tuple[str, int], Any] = {}
        self._next_read = 0.0
        self._reset_evidence()
        for ref in settings.models:  # NaN until warmed here (exported before any event)
            metrics.model_warmup.labels(ref.name).set(float("nan"))

    @property
    def record(self) -> dict[str, Any] | None:
        return None if self.stored is None else self.stored.record

    def observer(self, promotion: Any = None) -> Callable[[Joined], None]:
        """What the label join calls with joined rows: ``promotion`` (champion/challenger,
        when configured) first, then this rollout."""
        if promotion is None:
            return self.joined

        def both(joined: Joined) -> None:
            promotion.observe(joined)
            self.joined(joined)

        return both

    def between_batches(self, pipeline: Pipeline) -> Arms | None:
        """The arms ``pipeline`` serves from the next batch on (None: no candidate)."""
        serving, probe = pipeline.serving, pipeline.last_good_X
        now = time.monotonic()
        if now >= self._next_read:
            self._next_read = now + self.interval_s
            try:
                version = self.store.active_rollout_version(self.name)
                if version != (None if self.stored is None else self.stored.version):
                    self._adopt(None if version is None else self.store.load_rollout(self.name))
            except ModelStoreError as exc:  # a broken store never stops the worker
                log.error("cannot read the rollout %r: %s", self.name, exc)
                return self.arms
            self._follow(serving, probe)
            if self.arms is not None and self.record and self.record["status"] == "running":
                self._judge()
        else:
            self._follow(serving, probe)
        return self.arms

    def delivered(self, result: BatchResult) -> None:
        """A published batch: its candidate's time and failure, and both arms by id."""
        arms = result.arms
        if arms is None or self.record is None or self.record["status"] != "running":
            return
        self.seconds.append(arms.seconds)
        self.n_batches += 1
        self.n_errors += arms.error is not None
        if arms.candidate is not None and result.ids:
            now = time.monotonic()
            arrays = {"champion": arms.champion, "candidate": arms.candidate}
            self.rows.add(result.ids, arrays, now)
            labels = self.settings.labels
            self.rows.expire(now - labels.join_max_age_s, labels.join_max_entries)

    def joined(self, joined: Joined) -> None:
        """Labels joined to published events: both arms' outcome on those of this step."""
        if self.evidence is None or not len(joined):
            return
        found, rows = self.rows.take(joined.ids)
        if found.any():
            y = joined.y[:, 0] if joined.y.ndim == 2 else joined.y
            self.evidence.push(rows, y[found])

    # -- internals ---------------------------------------------------------------------------

    def _reset_evidence(self) -> None:
        self.rows = RowStore()
        self.seconds: collections.deque[float] = collections.deque(maxlen=_LATENCY_BATCHES)
        self.n_batches = self.n_errors = 0
        self.evidence = None if self.arms is None else self._new_evidence(self.arms.base)

    def _new_evidence(self, serving: Serving) -> Any:
        if self.record is None:
            return None
        gates = Gates.from_record(self.record["gates"])
        return new_evidence(gates, serving.layout.blocks[0])

    def _adopt(self, stored: StoredRollout | None) -> None:
        old = self.record
        self.stored = stored
        record = self.record
        share = 0.0 if record is None else share_of(record)
        self.metrics.rollout_share.set(share)
        running = record is not None and record["status"] in ("running", "paused")
        self.metrics.rollout_step.set(record["step"] if record is not None and running else -1)
        if record is None or share == 0.0:
            self._drop_arms()
        elif self.arms is not None:
            self.arms = self.arms.at_share(share)
        key = ("step", "status", "step_started_at")
        if old is None or record is None or any(old.get(k) != record.get(k) for k in key):
            self._reset_evidence()
            if running:  # a new step's count from its first label, not the last step's
                self.metrics.rollout_labels.set(0)
        if stored is not None and (old is None or old != record):
            log.warning(
                "rollout %r v%d: %s at step %d (%g%% of keys)",
                self.name,
                stored.version,
                record["status"] if record else "-",
                record["step"] if record else -1,
                share,
            )

    def _drop_arms(self) -> None:
        if self.arms is not None:
            self.arms.close()
        self.arms = None
        self.evidence = None

    def _follow(self, serving: Serving, probe: np.ndarray | None) -> None:
        """Arms built from ``serving`` (the candidate rebuilt after a hot reload)."""
        record = self.record
        if record is None or share_of(record) == 0.0:
            return
        candidate = record["candidate"]
        model, version, strategy = (candidate.get(k) for k in ("model", "version", "strategy"))
        if (model is None or serving.versions.get(model) == version) and (
            strategy is None or serving.active.name == strategy
        ):
            self._drop_arms()  # the champion serves the candidate: nothing left to compare
            return
        if self.arms is not None and self.arms.base is serving and self._arms_for == candidate:
            return
        if model is not None and serving.versions.get(model) != version:
            # A version to load (seconds, in a bounded child first): on a thread, as hot reload
            # loads; the champion serves every event meanwhile.
            built: Serving | Exception | None = self._built_on_thread(serving, candidate, probe)
            if built is None:
                return
        else:
            try:
                built = self._build(serving, None, None, strategy, None)
            except Exception as exc:
                built = exc
        self._drop_arms()
        if isinstance(built, Exception):  # a candidate that cannot be served is rolled back
            if record["status"] in ("running", "paused"):
                self._move("rollback", f"candidate cannot be served: {built}", None)
            return
        timeout_s = self.settings.on_model_error.timeout_ms / 1000
        self.arms, self._arms_for = Arms(built, serving, share_of(record), timeout_s), candidate
        self.evidence = self._new_evidence(serving)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a candidate being loaded (if any); whether none is left loading."""
        job = self._job
        if job is not None:
            job.join(timeout)
        return job is None or not job.is_alive()

    def _built_on_thread(
        self, serving: Serving, candidate: dict[str, Any], probe: np.ndarray | None
    ) -> Serving | Exception | None:
        """The candidate built from ``serving`` once its thread is done, else None (started
        now, or still loading)."""
        job, done = self._job, self._done
        if job is not None and job.is_alive():
            return None
        self._job = self._done = None
        if done is not None and done[0] is serving and done[1] == candidate:
            return done[2]
        model, version, strategy = (candidate.get(k) for k in ("model", "version", "strategy"))
        probe = None if probe is None else np.array(probe, copy=True)

        def build() -> None:
            try:
                result: Serving | Exception = self._build(serving, model, version, strategy, probe)
            except Exception as exc:
                result = exc
            self._done = (serving, candidate, result)

        self._job = threading.Thread(target=build, name="streamfuse-rollout", daemon=True)
        self._job.start()
        return None

    def _build(
        self,
        serving: Serving,
        model: str | None,
        version: int | None,
        strategy: str | None,
        probe: np.ndarray | None,
    ) -> Serving:
        candidate = serving
        if model is not None and version is not None and serving.versions.get(model) != version:
            if model not in serving.versions:
                raise ValueError(f"the worker serves no model {model!r}")
            if probe is None:
                probe = first_rows(self.store, serving, self.synthetic)
            loaded = self._loaded.get((model, version))
            if loaded is None:
                promotion = Promotion(model, serving.versions[model], version)
                loaded = serving.model_set.load_candidate(promotion, probe)
                self._loaded = {(model, version): loaded}
            model_set = serving.model_set.replaced(loaded)
            candidate = build_serving(self.store, self.settings, model_set)
            self._warm(candidate, model, probe)
        if strategy is not None:
            try:
                candidate = candidate.with_active(strategy)
            except KeyError:
                raise ValueError(f"strategy {strategy!r} is not configured") from None
        return candidate

    def _warm(self, candidate: Serving, model: str, probe: np.ndarray) -> None:
        """The candidate run at the worker's batch sizes before it serves (:func:`warm`), unless
        ``reload.warmup`` is off."""
        if not self.settings.reload.warmup:
            log.info("rollout %r: %s not warmed (reload.warmup is off)", self.name, model)
            return
        seconds = warm(candidate, probe, self.settings, model)
        self.metrics.model_warmup.labels(model).set(seconds)
        log.info("rollout %r: %s warmed in %.3f s", self.name, model, seconds)

    def _judge(self) -> None:
        record = self.record
        if record is None or self.evidence is None:
            return
        gates = Gates.from_record(record["gates"])
        p99 = float(np.percentile(self.seconds, 99)) * 1000 if self.seconds else None
        elapsed = self.clock() - float(record.get("step_started_at", 0.0))
        vitals = Vitals(elapsed, p99, self.n_batches, self.n_errors)
        verdict = judge(gates, self.evidence, vitals, to_last=reaches_last(record))
        self.waiting = verdict.why
        self._export(verdict.figures)
        if verdict.action != "hold":
            self._move(verdict.action, verdict.why, verdict.figures)

    def _export(self, figures: dict[str, Any]) -> None:
        m, nan = self.metrics, float("nan")
        m.rollout_labels.set(figures["n"])
        for arm in ("champion", "candidate"):
            score = figures[f"{arm}_score"]
            m.rollout_arm_score.labels(arm).set(nan if score is None else score)
        m.rollout_p_value.labels("worse").set(figures["p_worse"])
        m.rollout_p_value.labels("better").set(figures["p_better"])
        p99 = figures["p99_ms"]
        m.rollout_candidate_p99.set(nan if p99 is None else p99 / 1000)

    def _move(self, action: str, why: str, figures: dict[str, Any] | None) -> None:
        stored = self.stored
        if stored is None:
            return
        new = moved(stored.record, action, self.origin, self.clock(), why, figures)
        try:
            version = self.store.publish_rollout(self.name, new, expected=stored.version)
        except ConflictError as exc:
            log.info(
                "another worker moved rollout %r first (v%s): adopting it", self.name, exc.current
            )
            self._next_read = 0.0
            return
        except ModelStoreError as exc:
            log.error("cannot record rollout %r's %s: %s", self.name, action, exc)
            self._reset_evidence()  # not retried on every batch
            return
        done = new["status"] == "done"
        self.metrics.rollout_decisions.labels("done" if done else action).inc()
        log.warning("rollout %r v%d: %s (%s)", self.name, version, action, why)
        candidate = new["candidate"]
        if done and candidate.get("model") is not None:
            try:
                self.store.promote(candidate["model"], int(candidate["version"]))
            except ModelStoreError as exc:
                log.error("rollout %r done, but promoting the candidate failed: %s", self.name, exc)
        try:
            self._adopt(self.store.load_rollout(self.name, version))
        except ModelStoreError as exc:
            log.error("cannot read rollout %r back: %s", self.name, exc)
            self._next_read = 0.0
