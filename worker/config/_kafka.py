"""The ``kafka`` section: the client library, the group, the guarantee, pass-through settings."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from worker.config._base import _Section, _SectionKeyError

__all__ = ["SPANNING_INTERVAL_MS", "KafkaSettings"]

# kafka.transaction_interval_ms when unset, with confluent-kafka and exactly_once: Kafka Streams'
# exactly-once commit interval. In the bench's full runs of 2026-12-07 the worker's exactly_once
# throughput was 0.79 to 1.19 of at_least_once with it, 0.61 to 0.86 with a transaction per batch.
SPANNING_INTERVAL_MS = 100


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
    # exactly_once with confluent-kafka: 0 commits one transaction per batch; N > 0 keeps one
    # open across batches and commits it once it is N ms old (Kafka Streams' commit interval).
    # Unset: SPANNING_INTERVAL_MS there, 0 otherwise (_interval_default).
    transaction_interval_ms: int = Field(0, ge=0)
    watchdog_s: float = Field(30.0, gt=0)
    connect_timeout_s: float = Field(30.0, gt=0)
    # How often every client refreshes topic metadata (kafka-python metadata_max_age_ms,
    # librdkafka topic.metadata.refresh.interval.ms; both default to 5 minutes): the group
    # rebalances onto partitions added to the input topic within this many seconds.
    metadata_refresh_s: float = Field(30.0, gt=0)
    # /readyz is not ready while this member has been rebalancing longer than this; unset: the
    # consumer's session timeout (kafka.consumer, else both clients' default of 45 s) + 15 s.
    rebalance_stuck_s: float | None = Field(None, gt=0)
    # Passed through to the chosen library in its own key names (kafka-python: ssl_cafile,
    # confluent-kafka: ssl.ca.location): security (SSL, SASL_SSL) and tuning. Their names are
    # checked by the transport when it is opened, before any broker is tried.
    client: dict[str, Any] = Field(default_factory=dict)
    producer: dict[str, Any] = Field(default_factory=dict)
    consumer: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _interval_default(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "transaction_interval_ms" in data:
            return data
        spanning = data.get("library") == "confluent-kafka" and (
            data.get("processing_guarantee") == "exactly_once"
        )
        return {**data, "transaction_interval_ms": SPANNING_INTERVAL_MS if spanning else 0}

    @model_validator(mode="after")
    def _spanning_transactions(self) -> KafkaSettings:
        if self.transaction_interval_ms and (
            self.library != "confluent-kafka" or self.processing_guarantee != "exactly_once"
        ):
            raise _SectionKeyError(
                "kafka.transaction_interval_ms",
                "transactions spanning batches need processing_guarantee exactly_once and"
                " library confluent-kafka (kafka-python's duplicated events in the rebalance"
                " fault test); set it to 0",
            )
        return self

    @model_validator(mode="after")
    def _library_installed(self) -> KafkaSettings:
        # Only whether the library is there: the names in kafka.client/consumer/producer are
        # the transport's to check, when it is opened (worker.transport.open_transport).
        if self.library == "confluent-kafka":
            import importlib.util

            if importlib.util.find_spec("confluent_kafka") is None:
                raise _SectionKeyError(
                    "kafka.library",
                    "confluent-kafka is not installed: pip install 'streamfuse[librdkafka]'",
                )
        return self

    @property
    def group_instance_id(self) -> str | None:
        """The consumer's ``group.instance.id`` with ``static_membership``, else None."""
        return f"{self.group_id}-{self.instance_id}" if self.static_membership else None

    @property
    def effective_rebalance_stuck_s(self) -> float:
        """``rebalance_stuck_s``, else the session timeout + 15 s."""
        if self.rebalance_stuck_s is not None:
            return self.rebalance_stuck_s
        session_ms = self.consumer.get(
            "session_timeout_ms", self.consumer.get("session.timeout.ms")
        )
        return (float(session_ms) / 1000 if session_ms is not None else 45.0) + 15.0

    @property
    def effective_transactional_id(self) -> str:
        return self.transactional_id or f"streamfuse-{self.group_id}-{self.instance_id}"
