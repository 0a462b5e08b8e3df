"""One broker test's world: fresh topics and a fresh group on the run's broker, the trained
store and its test rows, and the test's own directory; ``config(**overrides)`` writes the
worker's configuration for all of it, ``worker(config, log)`` starts ``streamfuse run`` on it.

Made by the ``scenario`` fixture of tests/conftest.py::

    s = scenario(partitions=2, group="tenk")
    config = s.config(kafka={"processing_guarantee": "exactly_once"})
    worker = s.worker(config, "worker.log")

A test that needs a world of its own (a cluster, topics that do not exist, another store)
passes ``store=``, ``topics=`` or ``group=`` to ``config``, or calls :func:`write_config`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.kafka import Broker
from tests.support.worker import Topics, WorkerProcess, write_config


@dataclass
class Scenario:
    kafka: Broker
    topics: Topics
    group: str
    store: Path
    rows: np.ndarray
    tmp_path: Path

    def config(self, name: str = "c", **overrides: Any) -> Path:
        """``<tmp_path>/<name>.yaml`` by :func:`write_config`: this scenario's store, broker,
        topics and group unless ``overrides`` names them; any other override is a section,
        merged as :func:`write_config` merges it."""
        given: dict[str, Any] = {
            "store": self.store,
            "bootstrap": self.kafka.bootstrap,
            "topics": self.topics,
            "group": self.group,
        }
        return write_config(self.tmp_path / f"{name}.yaml", **{**given, **overrides})

    def worker(self, config: Path, log: str, env: dict[str, str] | None = None) -> WorkerProcess:
        """``streamfuse run --config config`` started, its log in ``<tmp_path>/<log>``."""
        return WorkerProcess(config, self.tmp_path / log, env=env or {}).start()
