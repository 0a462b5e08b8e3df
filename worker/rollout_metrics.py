"""The rollout's series (issue 25): :class:`worker.metrics.Metrics` has them as attributes, on
its registry, like every other series (``docs/metrics.md`` lists them)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["ROLLOUT_ACTIONS", "RolloutSeries"]

#: ``streamfuse_rollout_decisions_total{action}``, exported at 0 from the start.
ROLLOUT_ACTIONS = ("advance", "rollback", "done")


class RolloutSeries:
    """A base of :class:`~worker.metrics.Metrics`: its rollout series are made as the object
    is (``Metrics(registry)``), before ``Metrics.__init__`` makes the others."""

    rollout_share: Gauge
    rollout_step: Gauge
    rollout_decisions: Counter
    rollout_labels: Gauge
    rollout_arm_score: Gauge
    rollout_p_value: Gauge
    rollout_candidate_p99: Gauge
    model_warmup: Gauge

    def __new__(cls, registry: CollectorRegistry, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        self.rollout_share = Gauge(
            "streamfuse_rollout_share",
            "Percent of keys the rollout's candidate serves on this worker (0: no rollout).",
            registry=registry,
        )
        self.rollout_step = Gauge(
            "streamfuse_rollout_step",
            "Index of the rollout step in force, from 0 (-1: no rollout running or paused).",
            registry=registry,
        )
        self.rollout_decisions = Counter(
            "streamfuse_rollout_decisions",
            "Rollout moves this worker decided on live evidence and recorded, by action.",
            ["action"],
            registry=registry,
        )
        self.rollout_labels = Gauge(
            "streamfuse_rollout_labels",
            "Labelled events both arms were scored on at the step in force, at the last look.",
            registry=registry,
        )
        self.rollout_arm_score = Gauge(
            "streamfuse_rollout_arm_score",
            "Each arm's score on those events: accuracy (mcnemar) or mean loss (paired_loss).",
            ["arm"],
            registry=registry,
        )
        self.rollout_p_value = Gauge(
            "streamfuse_rollout_p_value",
            "The paired test's one-sided p-value that the candidate is worse, or better.",
            ["side"],
            registry=registry,
        )
        self.rollout_candidate_p99 = Gauge(
            "streamfuse_rollout_candidate_p99_seconds",
            "The candidate's own predict time (its models and strategy), p99 at the step.",
            registry=registry,
        )
        self.model_warmup = Gauge(
            "streamfuse_model_warmup_seconds",
            "Seconds a new model version (hot reload or a rollout's candidate) took to predict "
            "at the worker's batch sizes before it served (its first, cold calls).",
            ["model"],
            registry=registry,
        )
        self.rollout_step.set(-1)
        for action in ROLLOUT_ACTIONS:
            self.rollout_decisions.labels(action)
        for arm in ("champion", "candidate"):  # NaN: nothing judged yet
            self.rollout_arm_score.labels(arm).set(float("nan"))
        for side in ("worse", "better"):
            self.rollout_p_value.labels(side).set(float("nan"))
        return self
