"""A replaced kafka-python producer is stopped for sure.

The old producer holds a batch it cannot deliver: its topic was deleted after the batch was
made, so the broker answers UNKNOWN_TOPIC_OR_PARTITION (retriable) for as long as it is asked.
kafka-python's ``close(timeout=0)`` raises from its flush then, and never reaches the I/O
thread, which lived on. A transactional one, once a coordinator answered, bumped its epoch
"after a recoverable error" and fenced the producer that replaced it: an exactly_once worker of
tests/faults/test_cluster.py exited so, below the minimum ISR.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.kafka import Broker, unique, wait_for
from worker.batch.records import OutRecord
from worker.config import settings_from_dict
from worker.errors import TransportError
from worker.transport import open_transport
from worker.transport.kafka_python.sink import KafkaPythonSink

pytestmark = pytest.mark.kafka


@pytest.fixture
def topics(kafka: Broker) -> tuple[str, str]:
    """(an output topic, one to delete once a batch for it is made)."""
    return kafka.create_topic(unique("replace-out")), kafka.create_topic(unique("replace-gone"))


@pytest.fixture
def sink(kafka: Broker, topics: tuple[str, str]) -> Iterator[KafkaPythonSink]:
    settings = settings_from_dict(
        {
            "kafka": {
                "bootstrap_servers": kafka.bootstrap,
                "group_id": unique("replace"),
                "library": "kafka-python",
                "processing_guarantee": "exactly_once",
            },
            "topics": {"input": unique("replace-in"), "output": topics[0]},
            "models": [{"name": "m"}],
            "strategy": {"name": "soft_vote"},
        },
        environ={},
    )
    made = open_transport(settings).sink()
    assert isinstance(made, KafkaPythonSink)
    made.init_transactions()
    yield made
    made.close(5)


def publish(sink: KafkaPythonSink, topic: str, value: bytes) -> None:
    sink.begin_transaction()
    sink.send(topic, [OutRecord(None, value, [])])
    sink.commit_transaction()


def test_the_replaced_producer_is_stopped_and_its_replacement_publishes(
    kafka: Broker, topics: tuple[str, str], sink: KafkaPythonSink
) -> None:
    healthy, gone = topics
    sink.begin_transaction()
    sink.send(gone, [OutRecord(None, b"first", [])])
    sink.flush(30)  # the producer knows the topic now
    kafka.admin.delete_topics([gone])
    wait_for(lambda: gone not in kafka.admin.list_topics(), what=f"topic {gone} deleted")
    sink.send(gone, [OutRecord(None, b"undeliverable", [])])
    with pytest.raises(TransportError):
        sink.flush(1.0)
    old: Any = sink.producer
    sink.replace()
    assert sink.producer is not old
    assert not old._sender.is_alive(), "the old producer's I/O thread still runs"
    publish(sink, healthy, b"after")
    values = [r.value for r in kafka.consume_all(healthy, 1, isolation_level="read_committed")]
    assert values == [b"after"]
