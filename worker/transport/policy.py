"""The client defaults, computed once from the settings for both adapters.

What the worker asks of its Kafka clients (acknowledgements, idempotence, batching, delivery
timeout, isolation, fetch sizes, metadata refresh) is decided here, in the project's own names;
each adapter's ``clients.py`` only renames these values into its library's keys, then lays the
user's own ``kafka.client``/``consumer``/``producer`` settings over them (the user's win). So the
two clients cannot drift apart again (they had: a producer batch of 256 KiB in one, 1 MiB in the
other; a delivery timeout of 120 s in one, 300 s in the other).

Pure data: nothing here imports a Kafka client.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.config import Settings

__all__ = [
    "BATCH_BYTES",
    "DELIVERY_TIMEOUT_MS",
    "ClientPolicy",
    "ConsumerPolicy",
    "LabelsPolicy",
    "Policy",
    "ProducerPolicy",
    "policy",
]

# A producer batch per partition of at most 256 KiB. A worker's batch of predictions is far
# smaller (hundreds of bytes per event), so the limit rarely binds: linger_ms and the flush end
# a batch first. It keeps every batch well under the broker's default per-batch limit
# (message.max.bytes, 1 MiB + 12 bytes, often set lower per topic): kafka-python splits a
# batch the broker refuses as too large, librdkafka fails all of its records (librdkafka
# #488), so its 1 MiB, which only just fit, was the riskier of the two.
BATCH_BYTES = 256 * 1024
# How long a record may wait for its acknowledgement, retries included (Java's and
# kafka-python's default; librdkafka's is 300 s). Not set under exactly_once: the transaction
# timeout bounds a record there (the coordinator aborts an older transaction), librdkafka
# refuses a delivery timeout above it and lowers its own to it, and kafka-python refuses one
# below linger plus its 30 s request timeout (the default transaction timeout is 15 s).
DELIVERY_TIMEOUT_MS = 120_000


@dataclass(frozen=True)
class ClientPolicy:
    """What every client shares (the consumers, the producer, the admin client)."""

    bootstrap_servers: str
    client_id: str
    metadata_refresh_ms: int  # new partitions of the input are seen this soon


@dataclass(frozen=True)
class ConsumerPolicy:
    """The input consumer: group member, commits by hand, reads only committed records."""

    group_id: str
    group_instance_id: str | None  # static membership (KIP-345)
    auto_commit: bool
    offset_reset: str
    isolation: str
    max_poll_records: int  # kafka-python only: librdkafka's consume() takes the count
    fetch_max_bytes: int
    partition_fetch_max_bytes: int
    receive_max_bytes: int  # librdkafka only: bounds a whole fetch response


@dataclass(frozen=True)
class LabelsPolicy:
    """The labels reader: assigns partitions itself, from their end, never commits."""

    client_id: str
    auto_commit: bool
    offset_reset: str
    isolation: str


@dataclass(frozen=True)
class ProducerPolicy:
    acks: str
    idempotence: bool
    linger_ms: int
    batch_bytes: int
    max_request_bytes: int
    delivery_timeout_ms: int | None  # None: the library's own (exactly_once)
    transactional_id: str | None  # exactly_once only
    transaction_timeout_ms: int | None


@dataclass(frozen=True)
class Policy:
    client: ClientPolicy
    consumer: ConsumerPolicy
    labels: LabelsPolicy
    producer: ProducerPolicy


def policy(settings: Settings) -> Policy:
    """The client defaults these settings call for."""
    kafka = settings.kafka
    max_event = settings.validation.max_event_bytes
    client_id = f"streamfuse-{kafka.instance_id}"
    transactional = kafka.processing_guarantee == "exactly_once"
    return Policy(
        client=ClientPolicy(
            bootstrap_servers=kafka.bootstrap_servers,
            client_id=client_id,
            metadata_refresh_ms=int(kafka.metadata_refresh_s * 1000),
        ),
        consumer=ConsumerPolicy(
            group_id=kafka.group_id,
            group_instance_id=kafka.group_instance_id,
            auto_commit=False,
            offset_reset="earliest",
            isolation="read_committed",
            max_poll_records=settings.batch.max_events,
            fetch_max_bytes=max(50 << 20, max_event * 2),
            partition_fetch_max_bytes=max(1 << 20, max_event + 1024),
            receive_max_bytes=max(100 << 20, max_event * 3),
        ),
        labels=LabelsPolicy(
            client_id=f"{client_id}-labels",
            auto_commit=False,
            offset_reset="latest",
            isolation="read_committed",
        ),
        producer=ProducerPolicy(
            acks="all",
            idempotence=True,
            linger_ms=5,
            batch_bytes=BATCH_BYTES,
            max_request_bytes=max(1 << 20, settings.topics.dead_letter_max_bytes + 64 * 1024),
            delivery_timeout_ms=None if transactional else DELIVERY_TIMEOUT_MS,
            transactional_id=kafka.effective_transactional_id if transactional else None,
            transaction_timeout_ms=kafka.transaction_timeout_ms if transactional else None,
        ),
    )
