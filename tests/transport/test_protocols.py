"""The in-memory fake and both adapters implement the transport protocols method for method,
with the protocol's parameters (tests are not type-checked: this is the check mypy would make
of an assignment to the protocol type)."""

from __future__ import annotations

import inspect

import pytest

from tests.support.fake_transport import FakeSink, FakeSource
from worker.transport import Sink, Source
from worker.transport.kafka_python.sink import KafkaPythonSink
from worker.transport.kafka_python.source import KafkaPythonSource
from worker.transport.librdkafka.sink import LibrdkafkaSink
from worker.transport.librdkafka.source import LibrdkafkaSource


def methods(protocol: type) -> dict[str, list[str]]:
    """Each public method of ``protocol`` and its parameter names."""
    return {
        name: list(inspect.signature(member).parameters)
        for name, member in vars(protocol).items()
        if callable(member) and not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("protocol", "implementation"),
    [
        (Sink, FakeSink),
        (Sink, KafkaPythonSink),
        (Sink, LibrdkafkaSink),
        (Source, FakeSource),
        (Source, KafkaPythonSource),
        (Source, LibrdkafkaSource),
    ],
    ids=lambda c: c.__name__,
)
def test_an_implementation_has_every_method_of_its_protocol(
    protocol: type, implementation: type
) -> None:
    wanted = methods(protocol)
    assert wanted  # the protocol has methods to compare
    found = {
        name: list(inspect.signature(getattr(implementation, name)).parameters)
        for name in wanted
        if callable(getattr(implementation, name, None))
    }
    assert found == wanted
