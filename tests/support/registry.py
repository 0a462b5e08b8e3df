"""A handle on the real Schema Registry used by the tests (``dev/schema-registry``)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEV_SCHEMA_REGISTRY = REPO / "dev" / "schema-registry"


@dataclass
class SchemaRegistry:
    """A running registry: its Confluent-compatible base URL, and whether this run started it."""

    url: str
    port: int
    started_here: bool

    def _env(self) -> dict[str, str]:
        return {**os.environ, "SCHEMA_REGISTRY_PORT": str(self.port)}

    def pid(self) -> int:
        cache = Path(os.environ.get("STREAMFUSE_CACHE", Path.home() / ".cache" / "streamfuse"))
        return int((cache / f"schema-registry-{self.port}" / "registry.pid").read_text())

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The registry does not answer inside the block (SIGSTOP, then SIGCONT): a stop
        and start would lose its in-memory schemas, a frozen process keeps them."""
        pid = self.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)


def start_registry() -> SchemaRegistry:
    """Start ``dev/schema-registry`` on ``SCHEMA_REGISTRY_TEST_PORT`` (default 18081), or use
    ``STREAMFUSE_TEST_SCHEMA_REGISTRY`` (a base URL) when set."""
    given = os.environ.get("STREAMFUSE_TEST_SCHEMA_REGISTRY")
    if given:
        return SchemaRegistry(given, 0, started_here=False)
    port = int(os.environ.get("SCHEMA_REGISTRY_TEST_PORT", "18081"))
    env = {**os.environ, "SCHEMA_REGISTRY_PORT": str(port)}
    status = subprocess.run([DEV_SCHEMA_REGISTRY, "status"], env=env, capture_output=True)
    out = subprocess.run([DEV_SCHEMA_REGISTRY, "start"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"dev/schema-registry start failed:\n{out.stdout}\n{out.stderr}")
    url = out.stdout.strip().splitlines()[-1]
    return SchemaRegistry(url, port, started_here=status.returncode != 0)


def stop_registry(registry: SchemaRegistry) -> None:
    """Stop the registry if this run started it."""
    if registry.started_here:
        subprocess.run(
            [DEV_SCHEMA_REGISTRY, "stop"], env=registry._env(), capture_output=True, check=False
        )
