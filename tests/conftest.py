"""Shared fixtures: a seeded rng, a fresh metrics registry, a temporary model store directory,
and the real Kafka broker with factories for uniquely named topics and consumer groups."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from model_store import ModelStore
from tests.support.kafka import Broker, start_broker, unique
from tests.support.registry import SchemaRegistry, start_registry, stop_registry
from tests.support.worker import Topics


@pytest.fixture(autouse=True)
def _thread_limits_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A worker served in this process caps torch's and the BLAS/OpenMP pools' threads for the
    whole process (``limit_threads``); put them back after the test, so a later test's float32
    sums do not depend on which tests ran before it (a torch MLP's outputs moved by 2e-7)."""
    from worker.service import process

    saved: list[Callable[[], None]] = []
    limit = process.limit_threads

    def limit_and_remember(n: int) -> None:
        if n > 0 and not saved:
            import torch
            from threadpoolctl import ThreadpoolController

            torch_threads = torch.get_num_threads()
            pools = [(lib, lib.num_threads) for lib in ThreadpoolController().lib_controllers]

            def restore() -> None:
                torch.set_num_threads(torch_threads)
                for lib, threads in pools:
                    lib.set_num_threads(threads)

            saved.append(restore)
        limit(n)

    monkeypatch.setattr(process, "limit_threads", limit_and_remember)
    yield
    for restore in saved:
        restore()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def tmp_store(tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "store"
    path.mkdir()
    return path


LIBRARIES = ("kafka-python", "confluent-kafka")


@pytest.fixture(params=LIBRARIES)
def library(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once per Kafka library: every worker it starts (in this process or as a
    child, which inherits the environment) takes ``kafka.library`` from the environment."""
    monkeypatch.setenv("STREAMFUSE_KAFKA__LIBRARY", request.param)
    yield request.param


@pytest.fixture(scope="session")
def kafka() -> Iterator[Broker]:
    yield from start_broker()


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[SchemaRegistry]:
    """The real Schema Registry (dev/schema-registry), started once per run."""
    started = start_registry()
    try:
        yield started
    finally:
        stop_registry(started)


@pytest.fixture
def topic_factory(kafka: Broker) -> Callable[..., str]:
    def make(prefix: str = "t", partitions: int = 1) -> str:
        return kafka.create_topic(unique(prefix), partitions)

    return make


@pytest.fixture
def group_factory() -> Callable[[str], str]:
    return lambda prefix="g": unique(prefix)


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """breast_cancer: rf, hgb, linear, mlp and every strategy, fitted on its held-out split."""
    from worker.tools.train import train

    root = tmp_path_factory.mktemp("trained") / "model-store"
    train("breast_cancer", root, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def test_rows(trained_store: Path) -> np.ndarray:
    return np.asarray(ModelStore(trained_store).load_dataset("test").arrays["X"])


@pytest.fixture
def topics(kafka: Broker, topic_factory: Callable[..., str]) -> Callable[..., Topics]:
    """Input, output, labels (co-partitioned with input) and dead-letter topics."""

    def make(partitions: int = 1) -> Topics:
        return Topics(
            input=topic_factory("features", partitions),
            output=topic_factory("predictions", partitions),
            labels=topic_factory("labels", partitions),
            dead_letter=topic_factory("dlq", 1),
        )

    return make


# Tests that need these may not pass by skipping: dev/setup provides both.
REQUIRED = {"kafka": "the Kafka broker", "browser": "Debian's chromium"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """A Kafka or browser test that skips is a failure of the run, not a pass."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        for marker, what in REQUIRED.items():
            if item.get_closest_marker(marker) is not None:
                report.outcome = "failed"
                report.longrepr = (
                    f"{what} test skipped ({report.longrepr}); {what} is part of the run"
                )
                break
