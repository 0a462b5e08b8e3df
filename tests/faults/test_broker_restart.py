"""The broker stops for about ten seconds mid-stream and starts again on the same data directory:
the workers (one per delivery guarantee) recover without help and nothing is lost.

It restarts a broker, so the module has one of its own (``dev/kafka`` on ``KAFKA_TEST_PORT`` + 10)
that it starts and stops: the run's shared broker, serving other tests at the same time, is
never taken down.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.faults.support import Tail, fast_group, produce_at_rate
from tests.support.kafka import DEV_KAFKA, Broker, run_root, start_broker, stop_broker, wait_for
from tests.support.worker import Topics, WorkerProcess, events, write_config

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

DOWN_S = 10.0
N_EVENTS = 20_000
RATE = 1000  # events per second per stream: input keeps coming before, during and after
GUARANTEES = ("at_least_once", "exactly_once")


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """This module's own broker, which its test takes down and up again."""
    port = int(os.environ.get("KAFKA_TEST_PORT", "19092")) + 10
    broker = start_broker(run_root(tmp_path_factory), port=port)
    try:
        yield broker
    finally:
        broker.close()
        if broker.started_here:
            stop_broker(port)


def dev_kafka(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_PORT": str(broker.port)}
    return subprocess.run(
        [str(DEV_KAFKA), *args], env=env, capture_output=True, text=True, timeout=180
    )


def broker_up(broker: Broker) -> bool:
    return dev_kafka(broker, "status").returncode == 0


@dataclass
class Stream:
    """One guarantee's topics, events, worker, output tail and input thread."""

    topics: Topics
    ids: list[str]
    values: list[bytes]
    worker: WorkerProcess
    tail: Tail
    producer: threading.Thread | None = None

    def start_input(self, bootstrap: str) -> None:
        """Send every event at ``RATE`` in a thread. Sends made while the broker is down wait
        in the producer's buffer; it is idempotent, so a retry never duplicates an input."""
        keys = [i.encode() for i in self.ids]
        self.producer = threading.Thread(
            target=produce_at_rate,
            args=(bootstrap, self.topics.input, self.values, keys, RATE),
            kwargs={"enable_idempotence": True, "delivery_timeout_ms": 120_000},
        )
        self.producer.start()


def test_workers_ride_out_a_ten_second_broker_outage(
    kafka: Broker,
    topics,
    group_factory,
    trained_store,
    test_rows,
    tmp_path: Path,
    figures,
    library: str,
) -> None:
    assert broker_up(kafka), "the module's own broker is not up"
    X = np.resize(test_rows, (N_EVENTS, test_rows.shape[1]))
    streams: dict[str, Stream] = {}
    for guarantee in GUARANTEES:
        t = topics(partitions=2)
        ids, values = events(X, f"o{guarantee[0]}")
        config = write_config(
            tmp_path / f"{guarantee}.yaml",
            store=trained_store,
            bootstrap=kafka.bootstrap,
            topics=t,
            group=group_factory("outage"),
            shadows=(),
            kafka={
                "processing_guarantee": guarantee,
                "transaction_timeout_ms": 10_000,
                "consumer": fast_group(library),
            },
            batch={"max_events": 200, "max_wait_ms": 20},
        )
        isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
        streams[guarantee] = Stream(
            t,
            ids,
            values,
            WorkerProcess(config, tmp_path / f"{guarantee}.log").start(),
            Tail(kafka.bootstrap, t.output, isolation),
        )
    down_for = 0.0
    try:
        for s in streams.values():
            s.worker.wait_assigned()
            s.start_input(kafka.bootstrap)
        for s in streams.values():
            wait_for(lambda s=s: s.tail.distinct() >= 2000, timeout=120, what="output flowing")
        stop = dev_kafka(kafka, "stop")
        assert stop.returncode == 0, stop.stderr
        down_at = time.monotonic()
        out_at_stop = {g: s.tail.distinct() for g, s in streams.items()}
        time.sleep(DOWN_S)  # the outage itself
        for g, s in streams.items():
            assert s.worker.proc is not None and s.worker.proc.poll() is None, (
                f"the {g} worker exited while the broker was down:\n{s.worker.text()}"
            )
        # restart = stop (a no-op now) + start on the kept data dir: topics and offsets survive.
        start = dev_kafka(kafka, "restart")
        assert start.returncode == 0, start.stderr
        down_for = time.monotonic() - down_at
        kafka.close()  # its admin client was connected to the old broker process
        seen = {}
        for g, s in streams.items():
            assert s.producer is not None
            s.producer.join(180)
            try:
                seen[g] = s.tail.wait_all(s.ids, timeout=180, alive=[s.worker])
            except TimeoutError as exc:
                raise AssertionError(f"{g}: {exc}; its log:\n{s.worker.text()[-6000:]}") from None
    finally:
        if not broker_up(kafka):
            dev_kafka(kafka, "restart")
            kafka.close()
        for s in streams.values():
            if s.producer is not None:
                s.producer.join(180)
            s.worker.stop()
            s.tail.close()
        wait_for(lambda: broker_up(kafka), timeout=120, what="the broker up again")
    results: dict[str, dict[str, int]] = {}
    for g, s in streams.items():
        counts = seen[g]
        results[g] = {
            "events_sent": len(s.ids),
            "out_at_stop": out_at_stop[g],
            "lost": len(set(s.ids) - set(counts)),
            "duplicates": sum(c - 1 for c in counts.values()),
            "error_lines": sum(" ERROR " in line for line in s.worker.text().splitlines()),
        }
    figures(restarts=1, down_s=round(down_for, 1), **results)
    for g, s in streams.items():
        assert s.worker.proc is not None and s.worker.proc.returncode == 0, s.worker.text()
        assert out_at_stop[g] < N_EVENTS, "the outage came after the stream, not mid-stream"
        assert results[g]["lost"] == 0, f"{g}: events lost"
    assert results["exactly_once"]["duplicates"] == 0
