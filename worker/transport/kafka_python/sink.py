"""The output producer over kafka-python: sends checked at flush, blocking calls bounded."""

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
from worker.transport.deadline import MARGIN_S, CallGuard

__all__ = ["KafkaPythonSink"]

log = logging.getLogger("streamfuse.kafka")

STOP_WAIT_S = 5.0  # a discarded producer's I/O thread stops at its next poll, which is woken

FATAL_TXN_ERRORS = (
    ProducerFencedError,
    InvalidProducerEpochError,
    TransactionalIdAuthorizationFailedError,
)


class KafkaPythonSink:
    """:class:`worker.transport.base.Sink` over a :class:`KafkaProducer`.

    ``make`` builds a ready producer (the broker answered); ``transactional`` producers get
    ``init_transactions`` from :meth:`init_transactions` and :meth:`replace`. Every blocking
    call runs on the producer's own thread under a deadline (:class:`CallGuard`): ``flush``'s
    timeout plus :data:`MARGIN_S`, ``kafka.watchdog_s`` for the transaction calls, which take
    no timeout in kafka-python. One that passes it raises
    :class:`worker.errors.KafkaCallStuckError`: the caller replaces the producer.
    """

    def __init__(
        self, make: Callable[[], KafkaProducer], transactional: bool, watchdog_s: float
    ) -> None:
        self._make = make
        self.transactional = transactional
        self.watchdog_s = watchdog_s
        self._guard = CallGuard("producer")
        self.producer: KafkaProducer | None = make()
        self._futures: list[Any] = []

    def _client(self) -> KafkaProducer:
        if self.producer is None:
            raise errors.TransportError("no producer (a replacement is not ready yet)")
        return self.producer

    def _run(self, call: Callable[[], Any], name: str, timeout_s: float | None = None) -> Any:
        return self._guard.run(call, name, self.watchdog_s if timeout_s is None else timeout_s)

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
        producer = self._client()
        try:
            self._run(lambda: producer.flush(timeout=timeout_s), "flush", timeout_s + MARGIN_S)
            for future in futures:
                future.get(timeout=0)
        except KafkaError as exc:
            raise errors.TransportError(f"publishing failed ({exc})") from exc

    def init_transactions(self) -> None:
        self._run(self._client().init_transactions, "init_transactions")

    def begin_transaction(self) -> None:
        producer = self._client()
        self._futures.clear()
        try:
            producer.begin_transaction()  # local: no call to a broker
        except FATAL_TXN_ERRORS as exc:
            raise _fenced(exc) from exc
        except KafkaError as exc:
            raise errors.TransportError(f"begin_transaction failed ({exc})") from exc

    def send_offsets_to_transaction(self, offsets: Offsets, token: GroupToken | None) -> None:
        if not offsets:
            return
        producer = self._client()
        native = {
            KafkaTopicPartition(tp.topic, tp.partition): OffsetAndMetadata(offset, None, -1)
            for tp, offset in offsets.items()
        }
        with self._aborting_on_failure():
            if token is None:
                raise errors.TransactionAbortedError("no group membership vouches for these")
            metadata = token.native
            self._run(
                lambda: producer.send_offsets_to_transaction(native, metadata),
                "send_offsets_to_transaction",
            )

    def commit_transaction(self) -> None:
        producer = self._client()
        with self._aborting_on_failure():
            self._run(producer.commit_transaction, "commit_transaction")
        self._futures.clear()  # commit_transaction flushed them

    @contextmanager
    def _aborting_on_failure(self) -> Iterator[None]:
        """A failed step aborts the transaction, then says so
        (:class:`worker.errors.TransactionAbortedError`); a fenced or stuck producer is the
        caller's to replace."""
        try:
            yield
        except FATAL_TXN_ERRORS as exc:
            raise _fenced(exc) from exc
        except (errors.KafkaCallStuckError, errors.ProducerStuckError):
            # The broker went away mid-transaction: a new producer with the same transactional
            # id fences the stuck one and aborts its open transaction.
            raise
        except (KafkaError, errors.TransportError) as exc:
            self.abort_transaction(exc)
            raise errors.TransactionAbortedError(f"transaction failed ({exc})") from exc

    def abort_transaction(self, cause: Exception) -> None:
        self._futures.clear()  # abort_transaction drops them
        producer = self._client()
        try:
            self._run(producer.abort_transaction, "abort_transaction")
        except FATAL_TXN_ERRORS as exc:
            raise _fenced(exc) from cause
        except errors.KafkaCallStuckError:
            raise
        except KafkaError as exc:
            raise errors.ProducerStuckError(f"aborting failed ({exc})") from cause

    def replace(self) -> None:
        """Stop the old producer for sure, then make a new one (a transactional one fences the
        old transactional id with its ``init_transactions``, which aborts any transaction the
        old one left open).

        Stopping means its I/O thread, not only its handle: kafka-python's ``close(timeout=0)``
        raises from its flush while batches are undelivered and never reaches the thread, which
        then retries on its own. A transactional one, once a coordinator answers, bumps its
        epoch after the "recoverable error" and so fences the producer that replaced it: the
        worker then exits fenced (seen in tests/faults/test_cluster.py below the minimum ISR).
        """
        old, self.producer = self.producer, None
        self._futures.clear()
        self._guard.close()
        self._guard = CallGuard("producer")
        if old is not None:
            _stop(old)
        producer = None
        try:
            producer = self._make()
            if self.transactional:
                new = producer
                self._run(new.init_transactions, "init_transactions")
        except (KafkaError, errors.WorkerError) as exc:
            if producer is not None:
                # Left running, its init_transactions() goes on retrying in the background
                # and, once a coordinator answers, fences the next replacement the same way.
                _stop(producer)
            raise errors.TransportError(f"the new producer is not ready yet ({exc})") from exc
        self.producer = producer

    def close(self, timeout_s: float) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            self._run(lambda: producer.close(timeout=timeout_s), "close", timeout_s + MARGIN_S)
        self._guard.close()


def _fenced(exc: Exception) -> errors.ProducerFencedError:
    return errors.ProducerFencedError(f"this worker's producer was fenced ({exc})")


def _stop(producer: KafkaProducer, wait_s: float = STOP_WAIT_S) -> None:
    """Stop a discarded producer's I/O thread (within ``wait_s``), then close it.

    The thread is kafka-python's ``Sender`` (``producer._sender``, private): its
    ``force_close()`` fails the undelivered batches and ends its loop at the next poll, which
    it wakes. ``close()`` is the public way there, but with a timeout of 0 it raises from its
    flush first while any batch is undelivered, and a longer timeout would wait for a broker
    that may not answer. A thread still running after ``wait_s`` is logged, not waited for."""
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(wait_s)
    try:
        producer.close(timeout=0)  # its batches are failed now: no flush to wait for
    except Exception as exc:  # the client is being discarded either way
        log.warning("closing the old producer: %s", exc)
    if sender is not None and sender.is_alive():
        log.warning("the old producer's I/O thread still runs %.0f s after it was stopped", wait_s)
