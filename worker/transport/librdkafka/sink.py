"""The output producer over librdkafka: delivery reports checked at flush, transactions with
timeouts, errors classified as librdkafka classifies them (fatal, retriable, requires abort)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from worker import errors
from worker.batch.records import OutRecord
from worker.transport.base import GroupToken, Offsets
from worker.transport.deadline import MARGIN_S, CallGuard

__all__ = ["LibrdkafkaSink"]

log = logging.getLogger("streamfuse.kafka")
PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
ABORT_MIN_S = 1.0  # an abort always gets this long, even when the commit used up the budget


# Fatal errors that say another instance owns the transactional id (librdkafka reports the
# broker's PRODUCER_FENCED and INVALID_PRODUCER_EPOCH as _FENCED), or that this worker may not
# use it: a new producer would not help (kafka-python's sink: FATAL_TXN_ERRORS). After any other
# fatal error the producer is unusable but the id is this worker's: a new producer, whose
# init_transactions settles the old one's transaction, is the cure. The cluster test saw one:
# INVALID_TXN_STATE from the abort after the group coordinator's node was killed.
FENCED = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)


def _kafka_error(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


def _fatal(err: KafkaError, name: str) -> errors.ProducerFencedError | errors.ProducerStuckError:
    """What a fatal error from the call ``name`` means: fenced, or replace the producer."""
    if err.code() in FENCED:
        return errors.ProducerFencedError(f"this worker's producer was fenced ({err.str()})")
    return errors.ProducerStuckError(f"{name}: fatal error, the producer is unusable ({err.str()})")


class LibrdkafkaSink:
    """:class:`worker.transport.base.Sink` over a librdkafka :class:`Producer`.

    ``make`` builds a producer; transactional producers get ``init_transactions`` from
    :meth:`init_transactions` and :meth:`replace`. ``timeout_s`` bounds every transaction call
    (``kafka.watchdog_s``), which librdkafka takes as its own timeout; each also runs on the
    producer's own thread under a deadline :data:`MARGIN_S` later (:class:`CallGuard`), since
    librdkafka does not always keep it (``send_offsets_to_transaction()`` waits on while the
    group coordinator cannot be reached: librdkafka #5456). A call that passes it raises
    :class:`worker.errors.KafkaCallStuckError`: the caller replaces the producer.
    """

    def __init__(self, make: Callable[[], Producer], transactional: bool, timeout_s: float):
        self._make = make
        self.transactional = transactional
        self.timeout_s = timeout_s
        self._guard = CallGuard("producer")
        self.producer: Producer | None = make()
        self._failed: list[str] = []
        self._retired: Producer | None = None  # replaced, freed once the new one is ready
        self._deadline: float | None = None  # the open transaction's budget to commit or abort

    def _client(self) -> Producer:
        if self.producer is None:
            raise errors.TransportError("no producer (a replacement is not ready yet)")
        return self.producer

    def _on_delivery(self, err: KafkaError | None, message: Any) -> None:
        # A record purged by abort_transaction() is reported at a later poll or flush, often
        # inside the next transaction's commit: it belongs to the aborted one (already said so)
        # and must not fail the next (the contract suite saw the next commit "fail" with "Local:
        # Purged in queue", and then its abort fail in state Ready).
        if err is not None and err.code() not in PURGED:
            self._failed.append(err.str())

    def send(self, topic: str, records: Sequence[OutRecord]) -> None:
        producer = self._client()
        produce, on_delivery = producer.produce, self._on_delivery
        full_since: float | None = None
        for r in records:
            while True:
                try:
                    produce(topic, r.value, r.key, headers=r.headers, on_delivery=on_delivery)  # type: ignore[arg-type]
                    full_since = None
                    break
                except BufferError:  # the local queue is full: serve delivery reports, retry
                    now = time.monotonic()
                    full_since = now if full_since is None else full_since
                    if now - full_since > self.timeout_s:  # nothing delivered: the brokers' gone
                        raise errors.TransportError(
                            f"sending to {topic}: the local queue stayed full for"
                            f" {self.timeout_s:g} s"
                        ) from None
                    producer.poll(0.05)
                except KafkaException as exc:
                    err = _kafka_error(exc)
                    raise errors.TransportError(
                        f"sending to {topic} failed ({err.str() if err else exc})"
                    ) from exc

    def _run(self, call: Callable[[], Any], name: str, timeout_s: float) -> Any:
        return self._guard.run(call, name, timeout_s + MARGIN_S)

    def flush(self, timeout_s: float) -> None:
        producer = self._client()
        left = self._run(lambda: producer.flush(timeout_s), "flush", timeout_s)
        failed, self._failed = self._failed, []
        if left:
            raise errors.TransportError(f"{left} records not delivered within {timeout_s:.0f}s")
        if failed:
            raise errors.TransportError(f"{len(failed)} records not delivered ({failed[0]})")

    def init_transactions(self) -> None:
        try:
            producer = self._client()
            self._run(
                lambda: producer.init_transactions(self.timeout_s),
                "init_transactions",
                self.timeout_s,
            )
        except KafkaException as exc:
            raise self._classified(exc, "init_transactions") from exc

    def begin_transaction(self) -> None:
        self._deadline = None
        try:
            self._client().begin_transaction()
        except KafkaException as exc:
            raise self._classified(exc, "begin_transaction") from exc

    # Adding the offsets, committing, and aborting if either fails, share one budget of
    # timeout_s, which starts at the first of them: a broker that went away is reported (and
    # the producer replaced) within it, as kafka-python's watchdog does, not after a second
    # timeout for the abort.

    def _budget(self) -> float:
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout_s
        return self._deadline

    def send_offsets_to_transaction(self, offsets: Offsets, token: GroupToken | None) -> None:
        if not offsets:
            return
        producer = self._client()
        native = [KafkaTopicPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()]
        deadline = self._budget()
        with self._aborting_on_failure(deadline):
            if token is None:
                raise errors.TransactionAbortedError("no group membership vouches for these")
            self._call(
                lambda left: producer.send_offsets_to_transaction(native, token.native, left),
                "send_offsets_to_transaction",
                deadline,
            )

    def commit_transaction(self) -> None:
        producer = self._client()
        deadline = self._budget()
        with self._aborting_on_failure(deadline):
            self._call(producer.commit_transaction, "commit_transaction", deadline)
            failed, self._failed = self._failed, []
            if failed:  # cannot happen after a successful commit; never ignore it if it does
                raise errors.TransportError(f"{len(failed)} records not delivered ({failed[0]})")
        self._deadline = None

    @contextmanager
    def _aborting_on_failure(self, deadline: float) -> Iterator[None]:
        """A failed step aborts the transaction within what is left of the budget, then says
        so (:class:`worker.errors.TransactionAbortedError`); a fenced or stuck producer is the
        caller's to replace."""
        try:
            yield
        except (errors.ProducerFencedError, errors.ProducerStuckError, errors.KafkaCallStuckError):
            self._deadline = None
            raise
        except (KafkaException, errors.TransportError) as exc:
            self._deadline = None
            self._abort(exc, max(ABORT_MIN_S, deadline - time.monotonic()))
            raise errors.TransactionAbortedError(f"transaction failed ({exc})") from exc

    def _call(self, call: Callable[[float], Any], name: str, deadline: float) -> None:
        """A transaction call given the time left before ``deadline``, retried while
        librdkafka calls its error retriable; a fatal error fences it or makes it unusable."""
        while True:
            left = max(0.0, deadline - time.monotonic())
            try:
                self._run(lambda left=left: call(left), name, left)  # type: ignore[misc]
                return
            except KafkaException as exc:
                err = _kafka_error(exc)
                if err is not None and err.fatal():
                    raise _fatal(err, name) from exc
                if err is not None and err.code() == KafkaError._TIMED_OUT:
                    raise errors.ProducerStuckError(f"{name}() timed out") from exc
                if err is not None and err.retriable() and time.monotonic() < deadline:
                    log.warning("%s: %s; retrying", name, err.str())
                    continue
                raise

    def abort_transaction(self, cause: Exception) -> None:
        self._deadline = None
        self._abort(cause, self.timeout_s)

    def _abort(self, cause: Exception, timeout_s: float) -> None:
        """Abort the open transaction within ``timeout_s``."""
        self._failed = []
        producer = self._client()
        try:
            self._run(lambda: producer.abort_transaction(timeout_s), "abort_transaction", timeout_s)
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err is not None and err.fatal():
                raise _fatal(err, "abort_transaction") from cause
            raise errors.ProducerStuckError(
                f"aborting failed ({err.str() if err else exc})"
            ) from cause

    def _classified(self, exc: KafkaException, name: str) -> Exception:
        err = _kafka_error(exc)
        if err is not None and err.fatal():
            return _fatal(err, name)
        return errors.TransportError(f"{name} failed ({err.str() if err else exc})")

    def replace(self) -> None:
        """The old producer (perhaps blocked in a call) stays referenced until the new one's
        ``init_transactions`` has fenced it; librdkafka frees it when the last reference goes
        (the stuck call's thread holds one until the call returns)."""
        old, self.producer = self.producer, None
        if old is not None:
            self._retired = old
        self._failed = []
        self._deadline = None
        self._guard.close()
        self._guard = CallGuard("producer")
        try:
            producer = self._make()
            if self.transactional:
                self._run(
                    lambda: producer.init_transactions(self.timeout_s),
                    "init_transactions",
                    self.timeout_s,
                )
        except (KafkaException, errors.WorkerError) as exc:
            raise errors.TransportError(f"the new producer is not ready yet ({exc})") from exc
        self.producer = producer
        self._retired = None

    def close(self, timeout_s: float) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            try:
                self._run(lambda: producer.flush(timeout_s), "flush", timeout_s)
            except KafkaException as exc:  # left unusable by a fatal error: nothing to flush
                log.error("closing the producer: %s", exc)
        self._guard.close()
