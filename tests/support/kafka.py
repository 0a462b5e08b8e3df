"""A handle on the real Kafka broker used by the tests, with factories for unique names."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import KafkaError

REPO = Path(__file__).resolve().parents[2]
DEV_KAFKA = REPO / "dev" / "kafka"


def wait_for(
    condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or condition}")
        time.sleep(interval)


@dataclass
class Broker:
    """A running broker: its address, and whether this test session started it."""

    bootstrap: str
    port: int
    started_here: bool
    _admin: KafkaAdminClient | None = field(default=None, repr=False)

    @property
    def admin(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="tests")
        return self._admin

    def create_topic(self, name: str, partitions: int = 1) -> str:
        self.admin.create_topics([NewTopic(name, partitions, 1)])
        wait_for(lambda: self._has_leaders(name, partitions), what=f"topic {name} leaders")
        return name

    def _has_leaders(self, name: str, partitions: int) -> bool:
        try:
            described = self.admin.describe_topics([name])
        except KafkaError:
            return False
        parts = described[0].get("partitions", []) if described else []
        return len(parts) == partitions and all(p.get("leader_id", -1) >= 0 for p in parts)

    def consume_all(
        self,
        topic: str,
        expected: int,
        timeout: float = 60.0,
        isolation_level: str = "read_uncommitted",
        idle_s: float = 0.0,
    ) -> list[Any]:
        """Read ``topic`` from the beginning until ``expected`` records (then ``idle_s`` more)."""
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level=isolation_level,
            group_id=None,
        )
        records: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while len(records) < expected and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=200).values():
                    records.extend(batch)
            idle_end = time.monotonic() + idle_s
            while time.monotonic() < idle_end:
                for batch in consumer.poll(timeout_ms=100).values():
                    records.extend(batch)
        finally:
            consumer.close()
        return records

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def run_root(tmp_path_factory: Any) -> Path:
    """The directory every process of this test run shares: the run's base temp directory, or
    its parent in a pytest-xdist worker (whose own base is ``<run base>/popen-gwN``)."""
    base = Path(tmp_path_factory.getbasetemp())
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def start_broker(root: Path, port: int | None = None) -> Broker:
    """Use ``STREAMFUSE_TEST_BOOTSTRAP`` if set; else ``dev/kafka`` on ``port`` (default
    ``KAFKA_TEST_PORT``, 19092), started once per run however many xdist workers ask for it:
    the first starts it under a lock and leaves a mark in ``root`` that :func:`stop_brokers`,
    run by the controlling process at the end of the run, reads. A broker that was already up
    is used and left running."""
    given = os.environ.get("STREAMFUSE_TEST_BOOTSTRAP")
    if given and port is None:
        return Broker(given, int(given.rsplit(":", 1)[1]), started_here=False)
    from filelock import FileLock

    port = port or int(os.environ.get("KAFKA_TEST_PORT", "19092"))
    env = {**os.environ, "KAFKA_PORT": str(port)}
    with FileLock(str(root / f"broker-{port}.lock")):
        mark = root / f"broker-{port}.started"
        already_up = subprocess.run([DEV_KAFKA, "status"], env=env, capture_output=True)
        out = subprocess.run([DEV_KAFKA, "start"], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"dev/kafka start failed:\n{out.stdout}\n{out.stderr}")
        if already_up.returncode != 0:
            mark.touch()
    return Broker(out.stdout.strip().splitlines()[-1], port, started_here=mark.exists())


def stop_broker(port: int) -> None:
    env = {**os.environ, "KAFKA_PORT": str(port)}
    subprocess.run([DEV_KAFKA, "stop"], env=env, capture_output=True)


def stop_brokers(root: Path) -> None:
    """Stop every broker this run started (see :func:`start_broker`)."""
    for mark in root.glob("broker-*.started"):
        stop_broker(int(mark.stem.removeprefix("broker-")))
        mark.unlink()
