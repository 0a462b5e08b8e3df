"""Prometheus metrics of the worker, on a registry passed in (never the global one).

Names and labels are a contract with the dashboards, each listed in ``docs/metrics.md`` (a test
fails when one is missing there). Histograms, not summaries, so dashboards can aggregate across
workers. Per-event values (end-to-end latency) are observed a whole batch at a time through
:class:`BatchHistogram`, a collector that bins a numpy array with one ``searchsorted`` instead
of one ``observe`` call per event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.histograms import BatchHistogram
from worker.rollout_metrics import RolloutSeries

__all__ = [
    "CONSUMER_RESET_REASONS",
    "DEAD_LETTER_STAGES",
    "GROUP_STATES",
    "KAFKA_CALLS",
    "LATENCY_BUCKETS",
    "MODEL_ERROR_KINDS",
    "RELOAD_OUTCOMES",
    "BatchHistogram",
    "Metrics",
]

# Label values known before the first event, exported at 0 from the start so that rate() and
# increase() over them read 0, not "no data" (Prometheus' instrumentation guide).
DEAD_LETTER_STAGES = ("decode", "validate", "predict", "combine", "encode")
MODEL_ERROR_KINDS = ("exception", "timeout", "busy", "shape", "nonfinite")
RELOAD_OUTCOMES = ("swapped", "refused")
GROUP_STATES = ("stable", "rebalancing", "unassigned")  # worker.transport.GroupState's values
CONSUMER_RESET_REASONS = (
    "rebalancing",
    "orphaned",
    "topic_deleted",
    "topic_recreated",
    "committed_unreadable",
)
REBALANCE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
KAFKA_CALLS = (  # the calls worker.transport bounds (CallGuard), exported at 0 from the start
    "flush", "init_transactions", "send_offsets_to_transaction", "commit_transaction",
    "abort_transaction", "commit", "close",
)  # fmt: skip

# 100 µs to 10 s: resolves sub-millisecond model calls and multi-second stalls alike.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = tuple(float(2**i) for i in range(0, 15))


class Metrics(RolloutSeries):
    """Every metric the worker exports, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.events_consumed = Counter(
            "streamfuse_events_consumed", "Records read from a topic.", ["topic"], registry=r
        )
        self.events_published = Counter(
            "streamfuse_events_published", "Predictions published.", registry=r
        )
        self.events_dead_lettered = Counter(
            "streamfuse_events_dead_lettered",
            "Events sent to the dead-letter topic, by the stage that refused them.",
            ["stage"],
            registry=r,
        )
        self.events_degraded = Counter(
            "streamfuse_events_degraded",
            "Predictions made without every model (a model failed for their batch).",
            registry=r,
        )
        self.batch_size = Histogram(
            "streamfuse_batch_size", "Events per micro-batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.model_predict_seconds = Histogram(
            "streamfuse_model_predict_seconds",
            "One model's predict call on a whole batch.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_errors = Counter(
            "streamfuse_model_errors",
            f"Model failures by kind ({', '.join(MODEL_ERROR_KINDS)}).",
            ["model", "kind"],
            registry=r,
        )
        self.combine_seconds = Histogram(
            "streamfuse_combine_seconds",
            "One strategy's combine call on a whole batch.",
            ["strategy"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency = BatchHistogram(
            "streamfuse_end_to_end_latency_seconds",
            "From the event's ts to the publish of its prediction.",
            LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_processing_seconds = Histogram(
            "streamfuse_batch_processing_seconds",
            "From poll to commit of one micro-batch.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "streamfuse_consumer_lag",
            "Records behind the end of the partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.rolling_metric = Gauge(
            "streamfuse_rolling_metric",
            "A rolling score over the last labelled events.",
            ["scope", "name", "metric"],
            registry=r,
        )
        self.labels_joined = Counter(
            "streamfuse_labels_joined", "Labels joined to a prediction.", registry=r
        )
        self.labels_unmatched = Counter(
            "streamfuse_labels_unmatched",
            "Labels that never met a prediction (unknown id, expired, or invalid).",
            registry=r,
        )
        self.labels_evicted = Counter(
            "streamfuse_labels_evicted",
            "Predictions dropped from the join cache before their label came (size or age).",
            registry=r,
        )
        # Drift and estimated accuracy against the store's reference profile (worker/drift/).
        self.feature_drift = Gauge(
            "streamfuse_feature_drift",
            "Drift of a feature over the rolling window against the reference (psi, ks).",
            ["feature", "statistic"],
            registry=r,
        )
        self.out_of_range_ratio = Gauge(
            "streamfuse_out_of_range_ratio",
            "Share of the rolling window's events outside the feature's reference range.",
            ["feature"],
            registry=r,
        )
        self.prediction_drift = Gauge(
            "streamfuse_prediction_drift",
            "PSI of a model's or strategy's outputs over the rolling window against held-out.",
            ["scope", "name"],
            registry=r,
        )
        self.estimated_metric = Gauge(
            "streamfuse_estimated_metric",
            "A score expected from calibrated confidences over the rolling window, no labels.",
            ["scope", "name", "metric"],
            registry=r,
        )
        self.model_info = Gauge(
            "streamfuse_model_info",
            "The model version being served (1).",
            ["model", "version"],
            registry=r,
        )
        self.model_reloads = Counter(
            "streamfuse_model_reloads",
            f"Hot reloads of a promoted model version by outcome ({', '.join(RELOAD_OUTCOMES)}).",
            ["model", "outcome"],
            registry=r,
        )
        self.transactions_committed = Counter(
            "streamfuse_transactions_committed",
            "Kafka transactions committed (exactly_once: one per batch).",
            registry=r,
        )
        self.transactions_aborted = Counter(
            "streamfuse_transactions_aborted",
            "Kafka transactions aborted (their batches are re-read from the committed offsets).",
            registry=r,
        )
        self.kafka_call_stuck = Counter(
            "streamfuse_kafka_call_stuck",
            "Blocking Kafka client calls that did not return within their deadline (kafka."
            "watchdog_s plus a margin), by call: the client was replaced and the batch re-read.",
            ["call"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "streamfuse_delivery_failures",
            "Batches whose publishing or transaction failed (a broker, a partition leader or "
            "min.insync.replicas unavailable, say): nothing of them was committed; re-read.",
            registry=r,
        )
        self.strategy_errors = Counter(
            "streamfuse_strategy_errors",
            "Combine failures of a strategy (its batch goes to the dead-letter topic if active).",
            ["strategy"],
            registry=r,
        )
        self.stored_strategies_refused = Counter(
            "streamfuse_stored_strategies_refused",
            "Stored strategy fits the store refused (tampered, unsigned, unsafe); refit instead.",
            ["strategy"],
            registry=r,
        )
        self.drift_profiles_refused = Counter(
            "streamfuse_drift_profiles_refused",
            "Reference profiles refused (by the store, or malformed): drift off until the next.",
            registry=r,
        )
        self.store_signed = Gauge(
            "streamfuse_store_signed",
            "1 when the model store is verified with a key (store.key_file), else 0.",
            registry=r,
        )

        self.heldout_metric = Gauge(
            "streamfuse_heldout_metric",
            "The score of the served versions on the store's test split (else its held-out set).",
            ["scope", "name", "metric"],
            registry=r,
        )
        self.active_strategy_info = Gauge(
            "streamfuse_active_strategy_info",
            "The strategy whose output is published (1).",
            ["strategy"],
            registry=r,
        )
        # -- group membership (issue 22) --
        self.group_state = Gauge(
            "streamfuse_group_state",
            "This member's consumer group state: 1 for the current one (stable, rebalancing,"
            " unassigned), 0 for the others.",
            ["state"],
            registry=r,
        )
        self.group_state_age = Gauge(
            "streamfuse_group_state_age_seconds",
            "How long this member has been in its current group state.",
            registry=r,
        )
        self.group_generation = Gauge(
            "streamfuse_group_generation",
            "The consumer group's generation (librdkafka: the assignments this member received).",
            registry=r,
        )
        self.labels_partitions_missing = Gauge(
            "streamfuse_labels_partitions_missing",
            "Assigned input partitions the labels topic does not have (not co-partitioned).",
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "streamfuse_assigned_partitions",
            "Input partitions assigned to this member.",
            registry=r,
        )
        self.rebalance_duration = Histogram(
            "streamfuse_rebalance_duration_seconds",
            "From this member leaving a stable group to being stable (or unassigned) again.",
            buckets=REBALANCE_BUCKETS,
            registry=r,
        )
        self.input_topic_exists = Gauge(
            "streamfuse_input_topic_exists",
            "1 while the input topic exists, 0 while the brokers do not know it (deleted).",
            registry=r,
        )
        self.consumer_resets = Counter(
            "streamfuse_consumer_resets",
            "Consumer resets (rejoins, rebuilds) by reason: the watchdog's, the input topic's, or "
            "committed offsets the consumer could not read.",
            ["reason"],
            registry=r,
        )
        self.strategy_promotions = Counter(
            "streamfuse_strategy_promotions",
            "Champion/challenger promotions this worker decided and recorded, by new strategy.",
            ["strategy"],
            registry=r,
        )
        self.strategy_weight = Gauge(
            "streamfuse_strategy_weight",
            "A strategy's current weight of one model (hedge and select_best move live).",
            ["strategy", "model"],
            registry=r,
        )

    def initialise(
        self,
        *,
        input_topic: str,
        models: Sequence[str],
        strategies: Sequence[str],
        rolling: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """Export every series whose labels are known before the first event: counters and
        histograms at 0, rolling scores as NaN (nothing scored yet), the active strategy
        (``strategies[0]``) at 1."""
        self.events_consumed.labels(input_topic)
        for stage in DEAD_LETTER_STAGES:
            self.events_dead_lettered.labels(stage)
        for call in KAFKA_CALLS:
            self.kafka_call_stuck.labels(call)
        for model in models:
            self.model_predict_seconds.labels(model)
            for kind in MODEL_ERROR_KINDS:
                self.model_errors.labels(model, kind)
            for outcome in RELOAD_OUTCOMES:
                self.model_reloads.labels(model, outcome)
        for strategy in strategies:
            self.combine_seconds.labels(strategy)
            self.strategy_errors.labels(strategy)
        for scope, name, metric in rolling:
            self.rolling_metric.labels(scope, name, metric).set(float("nan"))
        for reason in CONSUMER_RESET_REASONS:
            self.consumer_resets.labels(reason)
        self.input_topic_exists.set(1)  # ensure_topics found or made it before the loop
        for state in GROUP_STATES:  # not joined yet: rebalancing, since start-up
            self.group_state.labels(state).set(1 if state == "rebalancing" else 0)
        if strategies:
            self.active_strategy_info.clear()
            self.active_strategy_info.labels(strategies[0]).set(1)

    def set_membership(self, state: str, age_s: float, generation: int, n_partitions: int) -> None:
        """The group membership gauges; ``state`` one of :data:`GROUP_STATES`."""
        for known in GROUP_STATES:
            self.group_state.labels(known).set(1 if known == state else 0)
        self.group_state_age.set(age_s)
        self.group_generation.set(generation)
        self.assigned_partitions.set(n_partitions)

    def set_heldout(self, scores: Iterable[tuple[str, str, str, float]]) -> None:
        """Replace the held-out scores with ``(scope, name, metric, value)`` rows."""
        self.heldout_metric.clear()
        for scope, name, metric, value in scores:
            self.heldout_metric.labels(scope, name, metric).set(value)

    def set_active_strategy(self, strategy: str) -> None:
        self.active_strategy_info.clear()
        self.active_strategy_info.labels(strategy).set(1)

    def set_strategy_weights(
        self, strategy: str, models: Sequence[str], weights: Sequence[float]
    ) -> None:
        for model, weight in zip(models, weights, strict=True):
            self.strategy_weight.labels(strategy, model).set(float(weight))

    def set_model_version(self, model: str, version: int, previous: int | None = None) -> None:
        if previous is not None and previous != version:
            with contextlib.suppress(KeyError):
                self.model_info.remove(model, str(previous))
        self.model_info.labels(model, str(version)).set(1)
