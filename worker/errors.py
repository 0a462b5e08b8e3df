"""Errors raised by the worker.

Hierarchy::

    WorkerError
    ├── ConfigError (ValueError)            bad config: exit code 2, the message names the key
    ├── StartupError (RuntimeError)         checks before the first event failed (models, topics)
    ├── RegistryUnavailableError (ConnectionError)  the Schema Registry did not answer while
    │                                       the worker waited for it and was asked to stop
    │   └── BrokerUnavailableError          no broker answered within the start-up deadline
    ├── DeliveryError (RuntimeError)        publishing or committing failed beyond recovery
    │   ├── ProducerFencedError             another instance owns this transactional id: exit
    │   │                                   (a fence on a transaction older than its timeout
    │                                       is the coordinator's: replaced, like a stuck one)
    └── TransportError (ConnectionError)    a Kafka client call failed; the caller retries
        ├── TransactionAbortedError         the transaction was aborted: re-read from committed
        ├── ProducerStuckError              the producer must be replaced, then re-read
        └── KafkaCallStuckError             a blocking client call passed its deadline: the
                                            client must be replaced, then re-read

The transport adapters (:mod:`worker.transport`) raise these instead of their client's own
errors, so nothing above the transport catches a Kafka client's exception types.

Per-event problems are not exceptions that escape: they become dead-letter records
(:class:`worker.batch.decode.Rejection`) with a stage and a reason.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailableError",
    "ConfigError",
    "DeliveryError",
    "KafkaCallStuckError",
    "ProducerFencedError",
    "ProducerStuckError",
    "RegistryUnavailableError",
    "StartupError",
    "TransactionAbortedError",
    "TransportError",
    "WorkerError",
]


class WorkerError(Exception):
    """Root of every error the worker raises on purpose."""


class ConfigError(WorkerError, ValueError):
    """The configuration is invalid; ``key`` is the dotted path of the offending setting."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config key '{key}': {problem}" if key else f"config: {problem}")


class StartupError(WorkerError, RuntimeError):
    """Something that can be checked before the first event is wrong."""


class RegistryUnavailableError(WorkerError, ConnectionError):
    """The Schema Registry did not answer; the batch was neither published nor committed."""


class BrokerUnavailableError(StartupError):
    def __init__(self, bootstrap: str, waited_s: float, cause: str) -> None:
        self.bootstrap = bootstrap
        super().__init__(
            f"no Kafka broker answered at {bootstrap} within {waited_s:.0f}s ({cause}); "
            "is it running? (dev/kafka start)"
        )


class DeliveryError(WorkerError, RuntimeError):
    """Publishing or committing failed and could not be retried."""


class ProducerFencedError(DeliveryError):
    """Another worker instance took over this transactional id (or its epoch is stale)."""


class TransportError(WorkerError, ConnectionError):
    """A Kafka client call failed (the broker went away, a send was not acknowledged)."""


class TransactionAbortedError(TransportError):
    """The batch's transaction failed and was aborted; nothing of it is visible."""


class ProducerStuckError(TransportError):
    """The producer hung, could not abort, or was left unusable by a fatal error that is not a
    fence; it must be replaced before the next batch."""


class KafkaCallStuckError(TransportError):
    """A blocking Kafka client call did not return within its deadline; ``call`` names it."""

    def __init__(self, call: str, timeout_s: float) -> None:
        self.call = call
        self.timeout_s = timeout_s
        super().__init__(f"the Kafka call {call}() did not return within {timeout_s:.3g} s")
