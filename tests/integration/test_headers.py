"""Input headers and the W3C trace context carried onto predictions and dead letters, through
the broker, with both Kafka clients; the output read back by kcat (``-f '%h'``)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import numpy as np
import orjson
import pytest
from kafka import KafkaProducer

from model_store import ModelStore
from tests.support.scenario import Scenario

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
HEADERS = [
    ("traceparent", f"00-{TRACE_ID}-{PARENT_SPAN}-01".encode()),
    ("x-tenant", b"acme"),
    ("x-b3-sampled", b"1"),
    ("x-secret", b"not-listed"),
]


def kcat_headers(bootstrap: str, topic: str, n: int) -> list[dict[str, str]]:
    """The headers of the first ``n`` records of ``topic`` as kcat prints them (``%h``:
    ``name=value`` pairs joined by commas)."""
    command = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e"]
    out = subprocess.run(
        [*command, "-c", str(n), "-f", "%h\n"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line]
    # a value may hold commas (a dead letter's reason): split before the next "name="
    pairs = [re.split(r",(?=[a-z][a-z0-9_.-]*=)", row) for row in rows]
    return [dict(pair.split("=", 1) for pair in row) for row in pairs]


@pytest.mark.parametrize("library", ["kafka-python", "confluent-kafka"])
def test_a_traceparent_and_allow_listed_headers_reach_the_prediction_and_the_dead_letter(
    library: str, scenario: Callable[..., Scenario]
) -> None:
    s = scenario(group="headers")
    X = np.asarray(ModelStore(s.store).load_dataset("test").arrays["X"], dtype=np.float64)
    t = s.topics
    producer = KafkaProducer(bootstrap_servers=s.kafka.bootstrap)
    good = orjson.dumps({"id": "traced", "features": X[0].tolist()})
    for value in (good, b"{not json"):
        producer.send(t.input, value=value, headers=HEADERS).get(timeout=30)
    producer.close()
    config = s.config(
        shadows=(), kafka={"library": library}, output={"headers": ["x-tenant", "x-b3-*"]}
    )
    worker = s.worker(config, "worker.log")
    try:
        s.kafka.consume_all(t.output, 1, timeout=90)
        s.kafka.consume_all(t.dead_letter, 1, timeout=30)
    finally:
        worker.stop()
    [prediction] = kcat_headers(s.kafka.bootstrap, t.output, 1)
    [letter] = kcat_headers(s.kafka.bootstrap, t.dead_letter, 1)
    for got in (prediction, letter):
        assert got["x-tenant"] == "acme" and got["x-b3-sampled"] == "1"
        assert "x-secret" not in got
        version, trace, span, flags = got["traceparent"].split("-")
        assert (version, trace, flags) == ("00", TRACE_ID, "01")
        assert len(span) == 16 and span != PARENT_SPAN
        assert got["streamfuse.source"].startswith(f"{t.input}:0:")
    assert prediction["traceparent"] != letter["traceparent"]
    assert letter["streamfuse.stage"] == "decode"
