"""Run real ``streamfuse run`` processes against the test broker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from kafka import KafkaProducer

from tests.support import forkserver
from tests.support.kafka import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Topics:
    input: str
    output: str
    labels: str
    dead_letter: str


def write_config(
    path: Path,
    *,
    store: Path,
    bootstrap: str,
    topics: Topics,
    group: str,
    strategy: str = "soft_vote",
    shadows: Iterable[str] = ("hard_vote", "stacking"),
    **sections: Any,
) -> Path:
    config: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
        "topics": {
            "input": topics.input,
            "output": topics.output,
            "labels": topics.labels,
            "dead_letter": topics.dead_letter,
        },
        "batch": {"max_events": 256, "max_wait_ms": 20},
        "store": str(store),
        "models": [{"name": n} for n in ("rf", "hgb", "linear", "mlp")],
        "strategy": {"name": strategy},
        "shadow_strategies": [{"name": s} for s in shadows],
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "reload": {"interval_s": 0.2},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@dataclass
class WorkerProcess:
    """``streamfuse run --config`` in a child process, its log in a file."""

    config: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | forkserver.ForkedProcess | None = None

    def start(self) -> WorkerProcess:
        args = ["run", "--config", str(self.config)]
        env = {**_worker_environ(), **self.env}
        if forkserver.enabled():  # the imports done once (tests/support/forkserver.py)
            self.log.touch()
            self.proc = forkserver.spawn(args, env, self.log, _worker_environ())
            return self
        self._log = open(self.log, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        return self

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_assigned(self, timeout: float = 120) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.text()}")
            return "partitions assigned: " in self.text()

        wait_for(ready, timeout=timeout, what="the worker's partition assignment")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(30)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is not None and hasattr(self, "_log"):
                self._log.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        if hasattr(self, "_log"):
            self._log.close()


def produce(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    keys: list[bytes | None] | None = None,
    timestamp_ms: int | None = None,
    **config: Any,
) -> None:
    """Send ``values`` and wait for each; ``timestamp_ms``: their CreateTime (default: now)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    keys = keys if keys is not None else [None] * len(values)
    futures = [
        producer.send(topic, key=k, value=v, timestamp_ms=timestamp_ms)
        for k, v in zip(keys, values, strict=True)
    ]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    producer.close()


def events(X: Any, prefix: str, start: int = 0) -> tuple[list[str], list[bytes]]:
    rows = X.tolist()
    ids = [f"{prefix}-{start + i}" for i in range(len(rows))]
    now = time.time()
    values = [
        orjson.dumps({"id": i, "features": r, "ts": now}) for i, r in zip(ids, rows, strict=True)
    ]
    return ids, values


def _worker_environ() -> dict[str, str]:
    """The test run's environment without the suite's own ``STREAMFUSE_TEST_*`` settings (the
    worker reads every other ``STREAMFUSE_`` variable as a config override, and an unknown key
    stops it)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STREAMFUSE_TEST_")}
