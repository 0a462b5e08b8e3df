"""Helpers for the fault tests: a live tail of an output topic, rate-limited producing, worker
memory, a worker process with faults injected, and the figures line each test reports."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from tests.support.kafka import wait_for
from tests.support.worker import WorkerProcess

INJECT = Path(__file__).with_name("inject_worker.py")


# A killed member holds its partitions until its session times out (kafka-python's default is
# 45 s); 6 s is the broker's minimum and keeps five restarts per test affordable.
def fast_group(library: str, **more: int) -> dict[str, int]:
    """Consumer settings for a quick takeover of a killed member's partitions (kafka-python's
    default session is 45 s; 6 s is the broker's minimum), in ``library``'s key names;
    ``more`` in kafka-python's names (``max_poll_interval_ms=...``)."""
    names = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, **more}
    if library == "confluent-kafka":
        return {key.replace("_", "."): value for key, value in names.items()}
    return names


@dataclass
class Figures:
    test: str
    values: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.test}: " + ", ".join(f"{k}={v}" for k, v in self.values.items())


class Tail:
    """Follows a topic from its beginning in a thread, counting ids (JSON values) and records."""

    def __init__(self, bootstrap: str, topic: str, isolation_level: str = "read_uncommitted"):
        self._consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level=isolation_level,
            group_id=None,
        )
        self.ids: Counter[Any] = Counter()
        self.records: list[Any] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tail-{topic}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for batch in self._consumer.poll(timeout_ms=200).values():
                    with self._lock:
                        self.records.extend(batch)
                        self.ids.update(_id(r.value) for r in batch)
        finally:
            self._consumer.close()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.records)

    def arrived(self) -> list[Any]:
        """The records so far, in the order they arrived."""
        with self._lock:
            return list(self.records)

    def distinct(self) -> int:
        with self._lock:
            return len(self.ids)

    def missing(self, ids: Iterable[Any]) -> list[Any]:
        with self._lock:
            return [i for i in ids if i not in self.ids]

    def wait_all(
        self,
        ids: list[Any],
        timeout: float,
        idle_s: float = 2.0,
        alive: Iterable[WorkerProcess] = (),
    ) -> Counter[Any]:
        """Wait until every id has come out, then ``idle_s`` more for stragglers (duplicates);
        fail at once if one of the ``alive`` workers exits meanwhile."""
        watched = list(alive)
        wait_for(
            lambda: (
                all(map(still_running, watched))
                and self.distinct() >= len(ids)
                and not self.missing(ids)
            ),
            timeout=timeout,
            interval=0.2,
            what=f"all {len(ids)} ids (have {self.distinct()})",
        )
        # Duplicates arrive after the last new id, if at all: wait until the tail is quiet.
        deadline = time.monotonic() + 10 * idle_s
        before = -1
        while self.count != before and time.monotonic() < deadline:
            before = self.count
            time.sleep(idle_s)
        return self.snapshot()

    def snapshot(self) -> Counter[Any]:
        with self._lock:
            return Counter(self.ids)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def still_running(worker: WorkerProcess) -> bool:
    """True while the worker runs; raises with its log once it has exited."""
    assert worker.proc is not None
    if worker.proc.poll() is not None:
        raise RuntimeError(f"worker exited with {worker.proc.returncode}:\n{worker.text()[-6000:]}")
    return True


def _id(value: bytes | None) -> str | int | None:
    """The event id of a JSON value; None for anything else (dead letters are arbitrary)."""
    try:
        doc_id = orjson.loads(value or b"null")["id"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    return doc_id if isinstance(doc_id, str | int) else None


class Built:
    """``n`` items, each built by ``make(i)`` only when a slice asks for it."""

    def __init__(self, n: int, make: Callable[[int], bytes]) -> None:
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, part: slice) -> list[bytes]:
        return [self.make(i) for i in range(*part.indices(self.n))]


@dataclass(frozen=True)
class EventStream:
    """Up to ``n`` events cycling through ``rows`` (ids ``prefix-0``, ``prefix-1``, ...), built
    as they are sent: input for as long as a test's cycles take, however slow the machine,
    without holding it all."""

    rows: Any
    prefix: str
    n: int

    def id(self, i: int) -> str:
        return f"{self.prefix}-{i}"

    def ids(self, count: int) -> list[str]:
        return [self.id(i) for i in range(count)]

    @property
    def values(self) -> Built:
        def make(i: int) -> bytes:
            row = self.rows[i % len(self.rows)].tolist()
            return orjson.dumps({"id": self.id(i), "features": row, "ts": time.time()})

        return Built(self.n, make)

    @property
    def keys(self) -> Built:
        return Built(self.n, lambda i: self.id(i).encode())


def produce_at_rate(
    bootstrap: str,
    topic: str,
    values: Sequence[bytes],
    keys: Sequence[bytes | None] | None,
    rate: float,
    stop: threading.Event | None = None,
    **config: Any,
) -> int:
    """Send ``values`` at about ``rate`` per second (or until ``stop``); returns how many."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", **config)
    keys = keys if keys is not None else [None] * len(values)
    chunk = max(1, int(rate / 20))
    started = time.monotonic()
    futures = []
    sent = 0
    try:
        for start in range(0, len(values), chunk):
            if stop is not None and stop.is_set():
                break
            for k, v in zip(
                keys[start : start + chunk], values[start : start + chunk], strict=True
            ):
                futures.append(producer.send(topic, key=k, value=v))
            sent = min(len(values), start + chunk)
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        producer.flush()
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close()
    return sent


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class MemoryWatch:
    """Samples a process's VmRSS in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(rss_mb(self.pid))
            except (OSError, RuntimeError):
                return
            self._stop.wait(interval)

    @property
    def peak(self) -> float:
        return max(self.samples, default=0.0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class InjectedWorker(WorkerProcess):
    """``streamfuse run`` with a model slowed down from outside (see ``inject_worker.py``)."""

    def start(self) -> InjectedWorker:
        import subprocess

        self._log = open(self.log, "ab")  # noqa: SIM115 - closed in wait()/stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(INJECT), "run", "--config", str(self.config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        return self


def lines_after(log: str, marker: str) -> list[str]:
    """The log lines after the first one containing ``marker``."""
    lines = log.splitlines()
    for n, line in enumerate(lines):
        if marker in line:
            return lines[n + 1 :]
    return []
