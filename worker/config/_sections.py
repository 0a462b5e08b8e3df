"""The settings sections: one pydantic model each, strict and immutable."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from worker.config._base import (
    ENV_PREFIX,
    _redact,
    _Section,
    _SectionKeyError,
)
from worker.config._kafka import KafkaSettings
from worker.config._registry import InputSettings, SchemaRegistrySettings
from worker.config._tracing import TracingSettings

__all__ = [
    "ENV_PREFIX",
    "BatchSettings",
    "DriftSettings",
    "InputSettings",
    "KafkaSettings",
    "LabelsSettings",
    "LoggingSettings",
    "MetricsSettings",
    "ModelErrorPolicy",
    "ModelRef",
    "OutputSettings",
    "PromoteSettings",
    "ReloadSettings",
    "RuntimeSettings",
    "SchemaRegistrySettings",
    "Settings",
    "StoreSettings",
    "StrategyRef",
    "TopicsSettings",
    "TracingSettings",
    "ValidationSettings",
]


class TopicsSettings(_Section):
    input: str = "features"
    output: str = "predictions"
    labels: str | None = "labels"
    dead_letter: str = "features.dlq"
    create: bool = False
    partitions: int = Field(1, ge=1)
    # Replicas of each topic the worker creates: -1 takes the brokers' default.replication.factor
    # (3 on a production cluster, 1 on a single dev broker), so one config fits both.
    replication_factor: int = Field(-1, ge=-1)
    # A dead letter larger than this is cut to this size (headers say so and give the original
    # size): keep it under the dead-letter topic's max.message.bytes (Kafka's default ~1 MiB).
    dead_letter_max_bytes: int = Field(900_000, ge=1024)

    @field_validator("replication_factor")
    @classmethod
    def _replicas(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (the brokers' default.replication.factor) or at least 1")
        return value


class BatchSettings(_Section):
    max_events: int = Field(512, ge=1, le=100_000)
    max_wait_ms: int = Field(20, ge=0, le=60_000)
    # Start a batch as soon as the models are free, with whatever has arrived, rather than
    # waiting max_wait_ms for more: batches then grow with the load by themselves (the events
    # that came in while the previous batch was predicted), and a light stream waits for
    # nothing. False: always wait max_wait_ms (or max_events) after the first event.
    start_when_idle: bool = True
    # Aim each batch at this latency (first event to last prediction): cap its size and wait by
    # the measured batch time, lifted while the consumer is behind (worker.batch.sizing).
    target_latency_ms: int | None = Field(None, ge=1, le=60_000)


class ValidationSettings(_Section):
    max_event_bytes: int = Field(1_048_576, ge=64)


class ModelRef(_Section):
    name: str
    version: int | None = Field(None, ge=1)


class PromoteSettings(_Section):
    """``strategy.promote``: champion/challenger promotion (off unless the section is given).

    A shadow strategy replaces the active one when, on the same labelled events (at least
    ``min_labels``, the last ``window``), it is better by ``margin`` (accuracy points for
    ``mcnemar``, mean per-event loss for ``paired_loss``: log-loss, or squared error for
    regression) and a one-sided paired test says so at level ``alpha``. The decision is
    recorded in the store under ``record`` (default: ``kafka.group_id``), so every worker of
    the group and a restarted one serve the same strategy.
    """

    min_labels: int = Field(500, ge=10)
    margin: float = Field(0.01, ge=0)
    test: Literal["mcnemar", "paired_loss"] = "mcnemar"
    alpha: float = Field(0.05, gt=0, lt=1)
    window: int = Field(5000, ge=10)
    record: str | None = None
    interval_s: float = Field(1.0, gt=0)  # how often the decision in force is read

    @model_validator(mode="after")
    def _window_holds_min_labels(self) -> PromoteSettings:
        if self.window < self.min_labels:
            raise _SectionKeyError("strategy.promote.window", "must be >= min_labels")
        return self


class StrategyRef(_Section):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    # auto: the fitted strategy from the store when it was fitted on the loaded model versions,
    # else refit on the store's held-out set; store: only the stored one; heldout: always refit.
    fit: Literal["auto", "store", "heldout"] = "auto"
    promote: PromoteSettings | None = None  # the active strategy only (champion/challenger)


class ModelErrorPolicy(_Section):
    policy: Literal["renormalize", "fail"] = "renormalize"
    min_models: int = Field(1, ge=1)
    timeout_ms: int = Field(1_000, ge=1)


class MetricsSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
    lag_interval_s: float = Field(5.0, gt=0)
    # /healthz fails when the loop has not turned for this long; unset: derived from the
    # timeouts (worker.service.health.stall_bound_s, 91 s with the defaults).
    loop_stall_s: float | None = Field(None, gt=0)


class LabelsSettings(_Section):
    window: int = Field(1000, ge=1)
    join_max_entries: int = Field(200_000, ge=1)
    join_max_age_s: float = Field(600.0, gt=0)
    early_label_wait_s: float = Field(60.0, ge=0)
    update_online: bool = True


class DriftSettings(_Section):
    """``drift``: the live features and outputs against the store's reference profile
    (``streamfuse train`` and ``fit`` publish it); off by itself when the store has none."""

    enabled: bool = True
    window: int = Field(1000, ge=10, le=1_000_000)  # events in the rolling window
    min_events: int = Field(200, ge=1)  # gauges read NaN until the window holds this many
    max_features: int = Field(32, ge=0, le=1000)  # features with gauges, first ones by index
    # The statistics and gauges at most this often (0: after every batch).
    interval_s: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _min_within_window(self) -> DriftSettings:
        if self.min_events > self.window:
            raise _SectionKeyError(
                "drift.min_events", f"{self.min_events} is more than drift.window ({self.window})"
            )
        return self


class StoreSettings(_Section):
    """``store``: the model store, given as its folder alone or as this section.

    The config is trusted input (a strategy's dotted path imports and runs a module); the store
    need not be: with ``key_file`` every manifest and pointer is signed on publish and verified
    on every load (``streamfuse store keygen`` makes a key; keep it outside the store).
    """

    path: Path = Path("model-store")
    key_file: Path | None = None
    require_signature: bool = False
    # Caps checked before a store file is read, inflated or allocated (model_store.StoreLimits;
    # unset: its defaults).
    limits: dict[str, int] = Field(default_factory=dict)
    # Remember the start-up trials that passed in $XDG_CACHE_HOME/streamfuse/trials (else
    # ~/.cache/streamfuse/trials): a restart with the same files, limits and libraries skips
    # the child. Only this user's own directory is used.
    trial_cache: bool = True

    @model_validator(mode="before")
    @classmethod
    def _folder_alone(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str | Path) else data

    @model_validator(mode="after")
    def _signature_needs_a_key(self) -> StoreSettings:
        if self.require_signature and self.key_file is None:
            raise _SectionKeyError(
                "store.require_signature", "needs store.key_file (the key to verify with)"
            )
        return self

    @field_validator("limits")
    @classmethod
    def _known_limits(cls, limits: dict[str, int]) -> dict[str, int]:
        if not limits:
            return limits
        from dataclasses import fields

        from model_store import StoreLimits

        known = sorted(f.name for f in fields(StoreLimits))
        for key, value in limits.items():
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                raise _SectionKeyError(
                    f"store.limits.{key}",
                    "not a store limit" + (f"; did you mean '{hint[0]}'?" if hint else ""),
                )
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise _SectionKeyError(f"store.limits.{key}", "must be a positive integer")
        return limits


class ReloadSettings(_Section):
    enabled: bool = True
    interval_s: float = Field(1.0, gt=0)
    # Run a new version (hot reload, a rollout's candidate) at the worker's batch sizes before
    # it serves. Off only to measure what it saves (python -m benchmarks swap).
    warmup: bool = True


class RuntimeSettings(_Section):
    # Threads each model may use inside its predict call (torch intra-op, OpenMP, BLAS). The
    # models already run in parallel with each other and with kafka-python's I/O thread, so
    # more threads per model oversubscribe the cores; 0 leaves the libraries' defaults.
    model_threads: int = Field(1, ge=0)
    # How long a thread may hold the GIL while another waits for it (sys.setswitchinterval).
    # The models release the GIL inside every tree or layer and must win it back from the main
    # thread's Kafka work each time; Python's 5 ms default starves them. 0: keep the default.
    gil_switch_ms: float = Field(0.5, ge=0)
    # Move everything alive after start-up (torch, scikit-learn, the models: ~300,000 objects)
    # out of the garbage collector's reach (gc.freeze), so its full collections stop pausing
    # every thread for ~140 ms; the objects of each hot-reloaded version frozen too.
    gc_freeze: bool = True


class OutputSettings(_Section):
    # Each prediction carries every model's contribution to the active strategy's output
    # (combiners.Explanation), computed per batch; off by default (it grows every message).
    explain: bool = False
    # Each "scores" as an object keyed by class ({"class_0": 0.02, ...}) instead of a list with
    # "classes" beside it.
    scores_by_class: bool = False
    # Input headers copied onto the prediction and the dead letter of each record: names or
    # glob patterns ("x-tenant", "x-b3-*"); the worker's own streamfuse.* headers never are.
    headers: tuple[str, ...] = ()
    # A W3C traceparent on the input is continued on the outputs (same trace id and flags, a
    # new span id; its tracestate beside it); a malformed one is not copied. false: not read.
    trace_context: bool = True
    # The predictions' format: json, or avro, protobuf or json_schema (Confluent-framed, the
    # schema generated from what is served and registered at start-up; needs
    # schema_registry.url).
    format: Literal["json", "avro", "protobuf", "json_schema"] = "json"
    # The subject the output schema is registered under: topic "<topic>-value", record
    # "streamfuse.Prediction", topic_record "<topic>-streamfuse.Prediction".
    subject_strategy: Literal["topic", "record", "topic_record"] = "topic"

    @field_validator("headers")
    @classmethod
    def _header_patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        if any(not p.strip() for p in patterns):
            raise ValueError("a header name or pattern cannot be empty")
        return patterns


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = False
    # At most one warning per dead-letter reason this often, counting the ones held back
    # (worker.logs.DeadLetterLog); 0: a line for every batch that dead-letters.
    dead_letter_interval_s: float = Field(30.0, ge=0)


class Settings(_Section):
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicsSettings = TopicsSettings()
    batch: BatchSettings = BatchSettings()
    validation: ValidationSettings = ValidationSettings()
    store: StoreSettings = StoreSettings()
    models: tuple[ModelRef, ...]
    strategy: StrategyRef
    shadow_strategies: tuple[StrategyRef, ...] = ()
    on_model_error: ModelErrorPolicy = ModelErrorPolicy()
    metrics: MetricsSettings = MetricsSettings()
    labels: LabelsSettings = LabelsSettings()
    drift: DriftSettings = DriftSettings()
    reload: ReloadSettings = ReloadSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    logging: LoggingSettings = LoggingSettings()
    output: OutputSettings = OutputSettings()
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
    input: InputSettings = InputSettings()
    tracing: TracingSettings = TracingSettings()

    @field_validator("models")
    @classmethod
    def _models_unique(cls, models: tuple[ModelRef, ...]) -> tuple[ModelRef, ...]:
        if not models:
            raise ValueError("at least one model is needed")
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return models

    @field_validator("shadow_strategies")
    @classmethod
    def _shadows_unique(cls, shadows: tuple[StrategyRef, ...]) -> tuple[StrategyRef, ...]:
        names = [s.name for s in shadows]
        if len(set(names)) != len(names):
            raise ValueError("shadow strategy names must be unique")
        for i, shadow in enumerate(shadows):
            if shadow.promote is not None:
                raise _SectionKeyError(
                    f"shadow_strategies.{i}.promote", "only the active strategy (strategy.promote)"
                )
        return shadows

    @model_validator(mode="after")
    def _strategies_registered(self) -> Settings:
        # Before any model loads: a misspelt strategy name stops here, not after the models.
        # A dotted path ('package.module:Class') is the user's code, imported at start-up.
        import combiners

        refs = [("strategy", self.strategy)]
        refs += [(f"shadow_strategies.{i}", s) for i, s in enumerate(self.shadow_strategies)]
        known = combiners.available_combiners()
        for key, ref in refs:
            if ":" in ref.name or ref.name in known:
                continue
            hint = difflib.get_close_matches(ref.name, known, n=1)
            raise _SectionKeyError(
                f"{key}.name",
                f"unknown strategy {ref.name!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (known: {', '.join(known)}; or a dotted path 'package.module:Class')",
            )
        return self

    @model_validator(mode="after")
    def _promotion_needs_challengers(self) -> Settings:
        promote = self.strategy.promote
        if promote is None:
            return self
        if not self.shadow_strategies:
            raise _SectionKeyError(
                "strategy.promote", "needs shadow_strategies (the challengers) to compare with"
            )
        if not self.topics.labels:
            raise _SectionKeyError("strategy.promote", "needs topics.labels (scored labels)")
        if self.strategy.name in {s.name for s in self.shadow_strategies}:
            raise _SectionKeyError(
                "strategy.promote", f"{self.strategy.name!r} is both active and a shadow"
            )
        return self

    @model_validator(mode="after")
    def _output_format_needs_a_registry(self) -> Settings:
        if self.output.format == "json":
            return self
        if self.schema_registry.url is None:
            raise _SectionKeyError(
                "output.format", f"{self.output.format} needs schema_registry.url"
            )
        if self.output.explain:
            raise _SectionKeyError(
                "output.format", f"{self.output.format} output has no explain field yet"
            )
        return self

    @property
    def decision_name(self) -> str:
        """Where ``strategy.promote`` records its decisions in the store."""
        promote = self.strategy.promote
        return (promote.record if promote is not None and promote.record else None) or (
            self.kafka.group_id
        )

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret-looking value replaced, for logs."""
        redacted: dict[str, Any] = _redact(self.model_dump(mode="json"))
        return redacted
