"""The dead-letter log: one line per reason per interval, counting the ones held back. The Kafka
clients' warnings in the worker's log: one line per template per interval, with the thread."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from worker.config import settings_from_dict
from worker.delivery import Batch
from worker.logs import ClientLogLimit, DeadLetterLog, configure_logging
from worker.service.worker import Worker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Any:
    logger = logging.getLogger("test.dead_letter_log")
    handler = Lines()
    logger.handlers[:] = [handler]
    logger.propagate = False
    yield logger, handler.lines
    logger.handlers[:] = []


def test_one_line_per_reason_per_interval_with_the_held_back_count(lines: Any) -> None:
    logger, written = lines
    clock = Clock()
    log = DeadLetterLog(logger, interval_s=30, clock=clock)
    misspelt = "'features' names 'alcohool', which the models do not know"
    log.add("validate", misspelt, 3)
    log.add("decode", "not valid UTF-8 JSON: unexpected end of data: line 1 column 9 (char 8)")
    assert written == [
        f"dead-lettered 3 events at validate: {misspelt}",
        "dead-lettered 1 event at decode: not valid UTF-8 JSON: unexpected end of data: "
        "line 1 column 9 (char 8)",
    ]
    for _ in range(500):  # a stream of bad events: no line each
        clock.now += 0.05
        log.add("validate", misspelt)
        log.add("validate", "duplicate id 'x' in the batch")  # new reason: one line
        log.flush()
    assert len(written) == 3 and written[2].startswith("dead-lettered 1 event at validate: dup")
    clock.now += 5.1  # 30.1 s after the first line: the held-back ones are counted
    log.flush()
    assert written[3] == (
        f"dead-lettered 500 more events at validate in the last 30 s, like: {misspelt}"
    )


def test_reasons_that_differ_in_names_and_numbers_are_one(lines: Any) -> None:
    logger, written = lines
    clock = Clock()
    log = DeadLetterLog(logger, interval_s=10, clock=clock)
    for i in range(50):
        log.add("validate", f"duplicate id 'evt-{i}' in the batch")
        log.add("validate", f"event is {2000 + i} bytes, over the limit of 1024")
    assert written == [
        "dead-lettered 1 event at validate: duplicate id 'evt-0' in the batch",
        "dead-lettered 1 event at validate: event is 2000 bytes, over the limit of 1024",
    ]
    clock.now += 10
    log.add("validate", "duplicate id 'late' in the batch")
    assert written[2] == (
        "dead-lettered 1 event at validate: duplicate id 'late' in the batch "
        "(49 more like it held back in the last 10 s)"
    )


def test_too_many_reasons_share_one_line(lines: Any) -> None:
    logger, written = lines
    log = DeadLetterLog(logger, interval_s=60, max_reasons=3, clock=Clock())
    for i in range(100):
        log.add("predict", f"model {'x' * (i % 10)}{chr(65 + i % 26)} failed")
    assert len(written) == 4
    assert written[3] == (
        "dead-lettered 1 event at predict: other reasons (too many different ones to follow)"
    )


def test_interval_zero_writes_every_time(lines: Any) -> None:
    logger, written = lines
    log = DeadLetterLog(logger, interval_s=0, clock=Clock())
    for _ in range(3):
        log.add("decode", "empty record")
    assert written == ["dead-lettered 1 event at decode: empty record"] * 3


class Record:
    topic, partition, key, headers = "features", 0, None, None

    def __init__(self, offset: int, value: bytes) -> None:
        self.offset = offset
        self.value = value


def test_the_worker_logs_its_dead_letters(
    trained: Any, caplog: pytest.LogCaptureFixture, registry: CollectorRegistry
) -> None:
    config = {
        "store": str(trained.root),
        "models": [{"name": n} for n in trained.model_names],
        "strategy": {"name": "soft_vote"},
    }
    worker = Worker(settings_from_dict(config, environ={}), registry)
    try:
        good = [1.0] * worker.serving.schema.n_features
        bad = ["1.0", *good[1:]]
        values = [orjson.dumps({"id": i, "features": bad}) for i in range(4)]
        values.append(orjson.dumps({"id": "ok", "features": good}))
        records = [Record(i, v) for i, v in enumerate(values)]
        result = worker.pipeline.process(records)
        assert len(result.dead_letters) == 4 and len(result.predictions) == 1
        batch = Batch(records, {}, time.perf_counter(), None)
        with caplog.at_level(logging.WARNING, "streamfuse.dead_letter"):
            worker.account(batch, result)
            worker.account(batch, result)
    finally:
        worker.pipeline.close()
    [line] = [r.getMessage() for r in caplog.records if r.name == "streamfuse.dead_letter"]
    assert line == "dead-lettered 4 events at validate: feature 0 must be a number, got str"


# -- the Kafka clients' own log -------------------------------------------------------------


def record(message: str, *args: object, name: str = "kafka.net.manager") -> logging.LogRecord:
    out = logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, None)
    out.threadName = "kafka-io-thread"
    return out


def test_client_records_pass_once_per_template_per_interval_with_the_thread() -> None:
    clock = Clock()
    limit = ClientLogLimit(interval_s=60, clock=clock)
    failed = "Bootstrap connection to %s failed: %s (backoff %s secs)"
    refused = "KafkaConnectionError: 111 ECONNREFUSED"
    first = record(failed, "bootstrap-0", refused, 0.05)
    assert limit.filter(first)
    assert first.getMessage() == (
        "Bootstrap connection to bootstrap-0 failed: KafkaConnectionError: 111 ECONNREFUSED"
        " (backoff 0.05 secs) [thread kafka-io-thread]"
    )
    lost = "<KafkaConnection node_id=bootstrap-%d (disconnected)>: Connection lost: %s"
    passed = []
    for i in range(1, 200):  # a reconnect loop: one line per template
        clock.now += 0.25
        for r in (record(failed, f"bootstrap-{i}", refused, i / 100), record(lost, i, "x")):
            if limit.filter(r):
                passed.append(r.getMessage())
    assert passed == [
        "<KafkaConnection node_id=bootstrap-1 (disconnected)>: Connection lost: x"
        " [thread kafka-io-thread]"
    ]
    clock.now += 60
    again = record(failed, "bootstrap-9", refused, 1)
    assert limit.filter(again)
    assert again.getMessage().endswith(
        "(backoff 1 secs) [thread kafka-io-thread] (199 more like it held back in the last 110 s)"
    )
    other_logger = record(failed, "bootstrap-9", refused, 1, name="kafka.client")
    assert limit.filter(other_logger)


def test_too_many_client_templates_share_one() -> None:
    limit = ClientLogLimit(interval_s=60, max_templates=3, clock=Clock())
    passed = [limit.filter(record(f"message {chr(65 + i)}")) for i in range(10)]
    assert passed == [True] * 4 + [False] * 6


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Seen(logging.Handler):
    """Counts the records with ``needle``: as a handler on ``kafka`` (the limit is another
    handler's filter) and as the first filter of ``streamfuse.librdkafka`` (before the limit)."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += self.needle in record.getMessage()

    def filter(self, record: logging.LogRecord | logging.Filter) -> bool:
        if isinstance(record, logging.LogRecord):
            self.emit(record)
        return True


def test_kafka_python_warnings_reach_the_worker_log_once_per_template(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import kafka

    configure_logging("INFO", client_interval_s=600)
    seen = Seen("Bootstrap connection to")  # every attempt, before the limit
    logging.getLogger("kafka").addHandler(seen)
    port = closed_port()
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=f"127.0.0.1:{port}",
        api_version=(2, 8),
        reconnect_backoff_ms=10,
        reconnect_backoff_max_ms=20,
    )
    try:
        deadline = time.monotonic() + 20
        while seen.n < 5 and time.monotonic() < deadline:
            consumer.poll(50)
    finally:
        consumer.close()
    assert seen.n >= 5, "no bootstrap warning of kafka-python reached its logger"
    lines = [line for line in capsys.readouterr().err.splitlines() if " kafka." in line]
    attempts = [line for line in lines if "Bootstrap connection to bootstrap-0 failed" in line]
    # one line per template: a refused connection, and under load maybe a timeout too
    assert 1 <= len(attempts) <= 2 < seen.n, lines
    assert len({re.sub(r"[\d.]+", "_", line.split(" ", 2)[2]) for line in attempts}) == len(
        attempts
    )
    assert " WARNING kafka.net." in attempts[0]
    # the client's own thread (kafka-python 3 does its network I/O on one), not the test's
    assert re.search(r"\[thread [^\]]+\]$", attempts[0])
    assert "[thread MainThread]" not in attempts[0]


def test_librdkafka_warnings_reach_the_worker_log_once_per_template(
    capsys: pytest.CaptureFixture[str],
) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    configure_logging("INFO", client_interval_s=600)
    seen = Seen("Connection refused")
    logger = logging.getLogger("streamfuse.librdkafka")
    logger.filters.insert(0, seen)
    port = closed_port()
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "group.id": "logs",
            "logger": logger,  # as the adapter sets it (worker.transport.librdkafka)
            "reconnect.backoff.ms": 10,
            "reconnect.backoff.max.ms": 20,
        }
    )
    thread = threading.current_thread().name
    try:
        consumer.subscribe(["logs"])
        deadline = time.monotonic() + 20
        while seen.n < 3 and time.monotonic() < deadline:  # librdkafka keeps reconnecting
            consumer.poll(0.05)
    finally:
        consumer.close()
    assert seen.n >= 3, "librdkafka did not log its reconnects"
    lines = [x for x in capsys.readouterr().err.splitlines() if "Connection refused" in x]
    assert len(lines) == 1, lines
    assert " ERROR streamfuse.librdkafka: FAIL [rdkafka#consumer-" in lines[0]
    assert lines[0].endswith(f"[thread {thread}]")
