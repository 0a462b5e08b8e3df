"""The dead-letter log: one line per reason per interval, counting the ones held back."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from worker.config import settings_from_dict
from worker.delivery import Batch
from worker.logs import DeadLetterLog
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
    topic, partition, key = "features", 0, None

    def __init__(self, offset: int, value: bytes) -> None:
        self.offset = offset
        self.value = value


def test_the_worker_logs_its_dead_letters(trained: Any, caplog: pytest.LogCaptureFixture) -> None:
    config = {
        "store": str(trained.root),
        "models": [{"name": n} for n in trained.model_names],
        "strategy": {"name": "soft_vote"},
    }
    worker = Worker(settings_from_dict(config, environ={}), CollectorRegistry())
    try:
        good = [1.0] * worker.serving.schema.n_features
        bad = ["1.0", *good[1:]]
        values = [orjson.dumps({"id": i, "features": bad}) for i in range(4)]
        values.append(orjson.dumps({"id": "ok", "features": good}))
        records = [Record(i, v) for i, v in enumerate(values)]
        result = worker.pipeline.process(records)
        assert len(result.dead_letters) == 4 and len(result.predictions) == 1
        batch = Batch(records, {}, time.perf_counter(), None, result=result)
        with caplog.at_level(logging.WARNING, "streamfuse.dead_letter"):
            worker.account(batch)
            worker.account(batch)
    finally:
        worker.pipeline.close()
    [line] = [r.getMessage() for r in caplog.records if r.name == "streamfuse.dead_letter"]
    assert line == "dead-lettered 4 events at validate: feature 0 must be a number, got str"
