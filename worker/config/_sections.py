"""The settings sections: one pydantic model each, strict and immutable."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

__all__ = [
    "ENV_PREFIX",
    "BatchSettings",
    "KafkaSettings",
    "LabelsSettings",
    "LoggingSettings",
    "MetricsSettings",
    "ModelErrorPolicy",
    "ModelRef",
    "ReloadSettings",
    "RuntimeSettings",
    "Settings",
    "StoreSettings",
    "StrategyRef",
    "TopicsSettings",
    "ValidationSettings",
]

ENV_PREFIX = "STREAMFUSE_"
SECRET_WORDS = (
    "password",
    "secret",
    "token",
    "sasl_plain_username",
    "sasl.username",
    "keyfile",
    "key.pem",
    "certificate.pem",
)


class _SectionKeyError(ValueError):
    """A bad key inside a free-form section, reported with its full dotted path."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(problem)


@functools.cache
def _kafka_setting_names() -> dict[str, frozenset[str]]:
    from worker.transport import setting_names

    return setting_names("kafka-python")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "streamfuse"
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    # The Kafka client behind the transport seam: kafka-python (pure Python, the default) or
    # confluent-kafka (librdkafka; pip install 'streamfuse[librdkafka]').
    library: Literal["kafka-python", "confluent-kafka"] = "kafka-python"
    # Stable per worker instance so a restarted instance fences its predecessor at once.
    instance_id: str = "0"
    transactional_id: str | None = None
    # Static group membership (KIP-345): the consumer joins as group.instance.id
    # "<group_id>-<instance_id>", so a restarted instance takes its old partitions back without
    # a rebalance, and a stopped one keeps them for session.timeout.ms (nobody else reads them).
    static_membership: bool = False
    transaction_timeout_ms: int = Field(15_000, ge=1_000)
    watchdog_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(30.0, gt=0)
    # Passed through to the chosen library in its own key names (kafka-python: ssl_cafile,
    # confluent-kafka: ssl.ca.location): security (SSL, SASL_SSL) and tuning.
    client: dict[str, Any] = Field(default_factory=dict)
    producer: dict[str, Any] = Field(default_factory=dict)
    consumer: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_client_settings(self) -> KafkaSettings:
        # kafka-python refuses unknown settings with a message that quotes their values (a
        # password, say): check the names here, naming the key and never the value.
        if self.library == "confluent-kafka":
            import importlib.util

            if importlib.util.find_spec("confluent_kafka") is None:
                raise _SectionKeyError(
                    "kafka.library",
                    "confluent-kafka is not installed: pip install 'streamfuse[librdkafka]'",
                )
            return self  # librdkafka checks its own key names when a client is built
        if not (self.client or self.consumer or self.producer):
            return self
        names = _kafka_setting_names()
        for section, allowed, what in (
            ("client", names["client"], "setting valid for the consumer, producer and admin"),
            ("consumer", names["consumer"], "consumer setting"),
            ("producer", names["producer"], "producer setting"),
        ):
            for key in getattr(self, section):
                if key not in allowed:
                    hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                    raise _SectionKeyError(
                        f"kafka.{section}.{key}",
                        f"not a kafka-python {what}"
                        + (f"; did you mean '{hint[0]}'?" if hint else ""),
                    )
        return self

    @property
    def group_instance_id(self) -> str | None:
        """The consumer's ``group.instance.id`` with ``static_membership``, else None."""
        return f"{self.group_id}-{self.instance_id}" if self.static_membership else None

    @property
    def effective_transactional_id(self) -> str:
        return self.transactional_id or f"streamfuse-{self.group_id}-{self.instance_id}"


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


class ValidationSettings(_Section):
    max_event_bytes: int = Field(1_048_576, ge=64)


class ModelRef(_Section):
    name: str
    version: int | None = Field(None, ge=1)


class StrategyRef(_Section):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    # auto: the fitted strategy from the store when it was fitted on the loaded model versions,
    # else refit on the store's held-out set; store: only the stored one; heldout: always refit.
    fit: Literal["auto", "store", "heldout"] = "auto"


class ModelErrorPolicy(_Section):
    policy: Literal["renormalize", "fail"] = "renormalize"
    min_models: int = Field(1, ge=1)
    timeout_ms: int = Field(1_000, ge=1)


class MetricsSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)
    lag_interval_s: float = Field(5.0, gt=0)


class LabelsSettings(_Section):
    window: int = Field(1000, ge=1)
    join_max_entries: int = Field(200_000, ge=1)
    join_max_age_s: float = Field(600.0, gt=0)
    early_label_wait_s: float = Field(60.0, ge=0)
    update_online: bool = True


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
    # every thread for ~140 ms; done again after each hot reload.
    gc_freeze: bool = True


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = False


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
    reload: ReloadSettings = ReloadSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    logging: LoggingSettings = LoggingSettings()

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
        return shadows

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret-looking value replaced, for logs."""
        return _redact(self.model_dump(mode="json"))


def _is_secret(key: object) -> bool:
    return any(w in str(key).lower() for w in SECRET_WORDS)


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: "***" if _is_secret(k) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value
