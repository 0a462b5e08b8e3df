"""The output producer over kafka-python: sends checked at flush, transactions under a watchdog."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from kafka import KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import (
    InvalidProducerEpochError,
    KafkaError,
    ProducerFencedError,
    TransactionalIdAuthorizationFailedError,
)
from kafka.structs import OffsetAndMetadata

from worker import errors
from worker.batch.records import OutRecord
from worker.transport.base import GroupToken, Offsets
from worker.transport.kafka_python.clients import with_watchdog

__all__ = ["KafkaPythonSink"]

log = logging.getLogger("streamfuse.kafka")

FATAL_TXN_ERRORS = (
    ProducerFencedError,
    InvalidProducerEpochError,
    TransactionalIdAuthorizationFailedError,
)


class KafkaPythonSink:
    """:class:`worker.transport.base.Sink` over a :class:`KafkaProducer`.

    ``make`` builds a ready producer (the broker answered); ``transactional`` producers get
    ``init_transactions`` (under the watchdog) from :meth:`init_transactions` and
    :meth:`replace`.
    """

    def __init__(
        self, make: Callable[[], KafkaProducer], transactional: bool, watchdog_s: float
    ) -> None:
        self._make = make
        self.transactional = transactional
        self.watchdog_s = watchdog_s
        self.producer: KafkaProducer | None = make()
        self._futures: list[Any] = []

    def _client(self) -> KafkaProducer:
        if self.producer is None:
            raise errors.TransportError("no producer (a replacement is not ready yet)")
        return self.producer

    def send(self, topic: str, records: Sequence[OutRecord]) -> None:
        send = self._client().send
        try:
            self._futures.extend(
                [send(topic, key=r.key, value=r.value, headers=r.headers) for r in records]
            )
        except KafkaError as exc:
            raise errors.TransportError(f"sending to {topic} failed ({exc})") from exc

    def flush(self, timeout_s: float) -> None:
        futures, self._futures = self._futures, []
        try:
            self._client().flush(timeout=timeout_s)
            for future in futures:
                future.get(timeout=0)
        except KafkaError as exc:
            raise errors.TransportError(f"publishing failed ({exc})") from exc

    def init_transactions(self) -> None:
        producer = self._client()
        with_watchdog(producer.init_transactions, "init_transactions", self.watchdog_s)

    @contextmanager
    def transaction(self, offsets: Offsets, token: GroupToken | None) -> Iterator[None]:
        producer = self._client()
        native = {
            KafkaTopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, None, -1)
            for tp, offset in offsets.items()
        }
        metadata = None if token is None else token.native
        try:
            producer.begin_transaction()
            yield
            if native:
                if metadata is None:
                    raise errors.TransactionAbortedError("no group membership vouches for these")
                with_watchdog(
                    lambda: producer.send_offsets_to_transaction(native, metadata),
                    "send_offsets_to_transaction",
                    self.watchdog_s,
                )
            with_watchdog(producer.commit_transaction, "commit_transaction", self.watchdog_s)
        except FATAL_TXN_ERRORS as exc:
            raise errors.ProducerFencedError(f"this worker's producer was fenced ({exc})") from exc
        except errors.TransactionWatchdogError as exc:
            # The broker went away mid-transaction: a new producer with the same transactional
            # id fences the stuck one and aborts its open transaction.
            raise errors.ProducerStuckError(str(exc)) from exc
        except (KafkaError, errors.TransportError) as exc:
            self._abort(exc)
            raise errors.TransactionAbortedError(f"transaction failed ({exc})") from exc
        finally:
            self._futures.clear()  # commit_transaction flushed them, abort dropped them

    def _abort(self, cause: Exception) -> None:
        producer = self._client()
        try:
            with_watchdog(producer.abort_transaction, "abort_transaction", self.watchdog_s)
        except FATAL_TXN_ERRORS as exc:
            raise errors.ProducerFencedError(f"this worker's producer was fenced ({exc})") from (
                cause
            )
        except (KafkaError, errors.TransactionWatchdogError) as exc:
            raise errors.ProducerStuckError(f"aborting failed ({exc})") from cause

    def replace(self) -> None:
        old, self.producer = self.producer, None
        self._futures.clear()
        if old is not None:
            _close_quietly(old)
        producer = None
        try:
            producer = self._make()
            if self.transactional:
                with_watchdog(producer.init_transactions, "init_transactions", self.watchdog_s)
        except (KafkaError, errors.WorkerError) as exc:
            if producer is not None:
                # Left open, its init_transactions() goes on retrying in the background and,
                # once a coordinator answers, bumps the epoch past the producer that replaced
                # it: that one is then fenced and the worker exits (seen with two of three
                # brokers down in tests/faults/test_cluster.py).
                _close_quietly(producer)
            raise errors.TransportError(f"the new producer is not ready yet ({exc})") from exc
        self.producer = producer

    def close(self, timeout_s: float) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.close(timeout=timeout_s)


def _close_quietly(producer: KafkaProducer) -> None:
    try:
        with_watchdog(lambda: producer.close(timeout=0), "close", 5.0)
    except Exception as exc:  # the client is being discarded either way
        log.warning("closing the old producer: %s", exc)
