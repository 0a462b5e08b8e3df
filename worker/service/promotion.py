"""Champion/challenger promotion in the worker (``strategy.promote``; off unless configured).

Every joined label batch goes into a :class:`~worker.accuracy.challenger.PairedEvidence`; between
batches :meth:`Promotion.step` first reads the decision in force from the store (every
``interval_s``: one pointer read) and adopts it when another worker or an operator changed it,
else asks :func:`~worker.accuracy.challenger.best_challenger` whether a shadow strategy beats
the active one, and if so records the decision in the store *compare-and-set* against the
decision it last saw. When two workers decide at once one publish wins; the other gets a
:class:`model_store.ConflictError` and adopts the winner's decision, so a group never flaps.
A restarted worker starts with the decision in force (:meth:`Promotion.start`).

A decision record: ``{"strategy", "previous", "action": "promote" | "revert", "by",
"figures": {test, n, champion_score, challenger_score, gain, p_value}, "held": [...]}``;
``held`` lists strategies an operator reverted away from, never promoted automatically again.
"""

from __future__ import annotations

import logging
import time

from model_store import ConflictError, ModelStore, ModelStoreError, StoredDecision
from worker.accuracy.challenger import PairedEvidence, Verdict, best_challenger
from worker.accuracy.labels import Joined
from worker.config import PromoteSettings, Settings
from worker.errors import ConfigError
from worker.inference.serving import Serving
from worker.metrics import Metrics

__all__ = ["Promotion"]

log = logging.getLogger("streamfuse.worker")


class Promotion:
    def __init__(
        self, store: ModelStore, settings: Settings, metrics: Metrics, serving: Serving
    ) -> None:
        assert settings.strategy.promote is not None
        self.config: PromoteSettings = settings.strategy.promote
        self.store = store
        self.metrics = metrics
        self.name = settings.decision_name
        self.origin = f"{settings.kafka.group_id}/{settings.kafka.instance_id}"
        layout = serving.layout
        if layout.is_multitask:
            raise ConfigError("strategy.promote", "not available for multi-task model sets")
        block = layout.blocks[0]
        if self.config.test == "mcnemar" and block.kind != "classification":
            raise ConfigError(
                "strategy.promote.test", "mcnemar compares accuracy: use paired_loss for regression"
            )
        names = [s.name for s in serving.strategies]
        self.evidence = PairedEvidence(names, block, self.config.test, self.config.window)
        self.version: int | None = None  # the decision in force, as last read
        self.held: set[str] = set()
        self._next_read = 0.0
        for name in names:
            metrics.strategy_promotions.labels(name)

    def start(self, serving: Serving) -> Serving:
        """The snapshot with the decision in force applied (none recorded: as configured)."""
        try:
            decision = self.store.load_decision(self.name)
        except ModelStoreError as exc:
            raise ConfigError("strategy.promote.record", f"{exc}") from exc
        self._next_read = time.monotonic() + self.config.interval_s
        return self._adopt(serving, decision)

    def observe(self, joined: Joined) -> None:
        """A joined label batch: every strategy's outcome on those events."""
        y = joined.y[:, 0] if joined.y.ndim == 2 else joined.y
        self.evidence.push(joined.outputs, y)

    def reapply(self, serving: Serving, active: str) -> Serving:
        """A hot-reloaded snapshot (built as configured) with ``active`` kept active; the
        strategies were refit, so the evidence starts again."""
        self.evidence.reset()
        return serving if serving.active.name == active else serving.with_active(active)

    def step(self, serving: Serving) -> Serving | None:
        """Between batches: a new snapshot when the active strategy changes, else None."""
        now = time.monotonic()
        if now >= self._next_read:
            self._next_read = now + self.config.interval_s
            try:
                version = self.store.active_decision_version(self.name)
                if version != self.version:
                    adopted = self._adopt(serving, self.store.load_decision(self.name, version))
                    return None if adopted is serving else adopted
            except ModelStoreError as exc:  # a broken store never stops the worker
                log.error("cannot read the strategy decision %r: %s", self.name, exc)
                return None
        c = self.config
        verdict = best_challenger(
            self.evidence,
            serving.active.name,
            min_labels=c.min_labels,
            margin=c.margin,
            alpha=c.alpha,
            exclude=sorted(self.held),
        )
        return None if verdict is None else self._decide(serving, verdict)

    def _decide(self, serving: Serving, verdict: Verdict) -> Serving | None:
        record = {
            "strategy": verdict.challenger,
            "previous": verdict.champion,
            "action": "promote",
            "by": self.origin,
            "figures": verdict.figures(),
            "held": sorted(self.held),
        }
        try:
            version = self.store.publish_decision(self.name, record, expected=self.version)
        except ConflictError as exc:
            log.info("another decider recorded decision v%s first: adopting it", exc.current)
            self._next_read = 0.0  # read and adopt it at the next step
            self.evidence.reset()
            return None
        except ModelStoreError as exc:
            log.error("cannot record the promotion of %s: %s", verdict.challenger, exc)
            self.evidence.reset()  # not retried on every batch
            return None
        self.version = version
        self.metrics.strategy_promotions.labels(verdict.challenger).inc()
        f = verdict.figures()
        log.warning(
            "promoted strategy %s over %s (decision v%d): %s on %d labelled events, "
            "%.4f vs %.4f, gain %.4f >= margin %s, p = %.3g < alpha %s",
            verdict.challenger,
            verdict.champion,
            version,
            f["test"],
            verdict.n,
            verdict.challenger_score,
            verdict.champion_score,
            verdict.gain,
            self.config.margin,
            verdict.p_value,
            self.config.alpha,
        )
        return self._switch(serving, verdict.challenger)

    def _adopt(self, serving: Serving, decision: StoredDecision | None) -> Serving:
        self.version = None if decision is None else decision.version
        if decision is None:
            return serving
        held = decision.record.get("held", [])
        self.held = {h for h in held if isinstance(h, str)} if isinstance(held, list) else set()
        name = decision.strategy
        if name not in self.evidence.names:
            log.error(
                "strategy decision %r v%d names %r, which is not configured; serving %s",
                self.name,
                decision.version,
                name,
                serving.active.name,
            )
            return serving
        if name == serving.active.name:
            return serving
        log.warning(
            "serving strategy %s: decision v%d (%s by %s)",
            name,
            decision.version,
            decision.record.get("action", "promote"),
            decision.record.get("by", "?"),
        )
        return self._switch(serving, name)

    def _switch(self, serving: Serving, name: str) -> Serving:
        self.evidence.reset()
        self.metrics.set_active_strategy(name)
        return serving.with_active(name)
