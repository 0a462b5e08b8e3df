"""A fatal producer error means one of two things, the same for both adapters: another instance
owns the transactional id (fenced: the worker stops, as a duplicate instance must be seen), or
the producer is unusable and must be replaced (the batch re-read from committed).

librdkafka marks both kinds "fatal". A fresh clone's run of the cluster test saw the second:
the group coordinator's node was killed, the session expired, and the abort of the open
transaction failed with a fatal ``INVALID_TXN_STATE``; the worker took it for a fence and
exited. Here librdkafka's producer is played by an object whose calls raise what librdkafka
raises after a fatal error (its :class:`KafkaError` built with ``fatal=True``)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from kafka.errors import (
    InvalidProducerEpochError,
    InvalidTxnStateError,
    ProducerFencedError,
    TransactionalIdAuthorizationFailedError,
)

from worker import errors
from worker.transport.kafka_python.sink import KafkaPythonSink
from worker.transport.librdkafka.sink import LibrdkafkaSink

FENCES = [
    KafkaError._FENCED,  # librdkafka: the broker's PRODUCER_FENCED, INVALID_PRODUCER_EPOCH
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
]


class Unusable:
    """A producer after a fatal error ``code``: every call raises it."""

    def __init__(self, code: int) -> None:
        self.error = KafkaError(code, "injected", fatal=True)

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise KafkaException(self.error)

        return call


def sink(code: int) -> LibrdkafkaSink:
    return LibrdkafkaSink(lambda: Unusable(code), transactional=True, timeout_s=2.0)


def steps(s: Any) -> dict[str, Any]:
    """Each transaction step, called as the delivery calls it."""
    cause = errors.TransportError("partitions lost")
    return {
        "begin_transaction": s.begin_transaction,
        "commit_transaction": s.commit_transaction,
        "abort_transaction": lambda: s.abort_transaction(cause),
    }


@pytest.mark.parametrize("code", FENCES)
@pytest.mark.parametrize("step", ["begin_transaction", "commit_transaction", "abort_transaction"])
def test_librdkafka_a_fence_is_fatal_to_the_worker(code: int, step: str) -> None:
    with pytest.raises(errors.ProducerFencedError, match="fenced"):
        steps(sink(code))[step]()


@pytest.mark.parametrize("step", ["begin_transaction", "commit_transaction", "abort_transaction"])
def test_librdkafka_any_other_fatal_error_asks_for_a_new_producer(step: str) -> None:
    with pytest.raises(errors.ProducerStuckError, match=f"{step}: fatal error") as raised:
        steps(sink(KafkaError.INVALID_TXN_STATE))[step]()
    assert not isinstance(raised.value, errors.ProducerFencedError)


def test_librdkafka_closing_an_unusable_producer_says_so_and_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink(KafkaError.INVALID_TXN_STATE).close(1.0)
    assert "closing the producer" in caplog.text


class KafkaPythonUnusable:
    """kafka-python's producer whose abort raises ``exc`` (as its transaction manager does)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def abort_transaction(self) -> None:
        raise self.exc


@pytest.mark.parametrize(
    "exc, expected",
    [
        (ProducerFencedError(), errors.ProducerFencedError),
        (InvalidProducerEpochError(), errors.ProducerFencedError),
        (TransactionalIdAuthorizationFailedError(), errors.ProducerFencedError),
        (InvalidTxnStateError(), errors.ProducerStuckError),
    ],
)
def test_kafka_python_classifies_the_same_errors_the_same_way(
    exc: Exception, expected: type[Exception]
) -> None:
    s = KafkaPythonSink(lambda: KafkaPythonUnusable(exc), transactional=True, watchdog_s=2.0)  # type: ignore[arg-type, return-value]
    with pytest.raises(expected) as raised:
        s.abort_transaction(errors.TransportError("partitions lost"))
    if expected is errors.ProducerStuckError:
        assert not isinstance(raised.value, errors.ProducerFencedError)
