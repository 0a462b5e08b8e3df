"""A handle on the real Kafka broker used by the tests, with factories for unique names."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
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


def start_broker() -> Iterator[Broker]:
    """Use ``STREAMFUSE_TEST_BOOTSTRAP`` if set; else start ``dev/kafka`` on a test port."""
    given = os.environ.get("STREAMFUSE_TEST_BOOTSTRAP")
    if given:
        yield Broker(given, int(given.rsplit(":", 1)[1]), started_here=False)
        return
    port = int(os.environ.get("KAFKA_TEST_PORT", "19092"))
    env = {**os.environ, "KAFKA_PORT": str(port)}
    already_up = subprocess.run([DEV_KAFKA, "status"], env=env, capture_output=True).returncode == 0
    out = subprocess.run([DEV_KAFKA, "start"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"dev/kafka start failed:\n{out.stdout}\n{out.stderr}")
    broker = Broker(out.stdout.strip().splitlines()[-1], port, started_here=not already_up)
    try:
        yield broker
    finally:
        broker.close()
        if broker.started_here:
            subprocess.run([DEV_KAFKA, "stop"], env=env, capture_output=True)
