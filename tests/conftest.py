"""Shared fixtures: a seeded rng, a fresh metrics registry, a temporary model store directory,
and the real Kafka broker with factories for uniquely named topics and consumer groups."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from model_store import ModelStore
from tests.support.kafka import Broker, run_root, start_broker, stop_brokers, unique
from tests.support.registry import SchemaRegistry, start_registry, stop_registry
from tests.support.scenario import Scenario
from tests.support.worker import Topics


def pytest_configure(config: pytest.Config) -> None:
    """The workers this run starts remember their passed trial loads (``store.trial_cache``) in
    a directory of the run's own, shared by its xdist processes, not in the user's cache: a
    worker of the run skips the trial of a store an earlier worker of the run tried, and no run
    finds another's record."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        return  # inherited from the controlling process
    # The brokers the run starts (dev/kafka) compile with the JVM's first tier only: a broker
    # living minutes spent half its CPU in the optimising compiler, and the run is CPU-bound
    # (docs/development.md); the benchmarks keep the JVM's default.
    os.environ.setdefault("KAFKA_JVM_OPTS", "-XX:TieredStopAtLevel=1")
    path = tempfile.mkdtemp(prefix="streamfuse-tests-cache-")
    os.environ["XDG_CACHE_HOME"] = path
    config.add_cleanup(lambda: shutil.rmtree(path, ignore_errors=True))


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


@pytest.fixture(autouse=True)
def _loggers_restored() -> Iterator[None]:
    """``cli.main`` (called in-process by tests in several directories) points the worker's
    loggers at the current, captured stderr and stops them propagating; put them back after
    the test, so a later test's ``caplog`` sees their records and none is written to a capture
    stream that is closed by then (a fresh clone's run failed two tests so)."""
    names = ("streamfuse", "kafka", "streamfuse.librdkafka", "model_store")
    loggers = [logging.getLogger(n) for n in names]
    saved = [(lg.handlers[:], lg.filters[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for logger, (handlers, filters, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.filters[:] = handlers, filters
        logger.setLevel(level)
        logger.propagate = propagate


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
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The run's broker, one for every xdist worker (stopped by :func:`pytest_sessionfinish`)."""
    broker = start_broker(run_root(tmp_path_factory))
    try:
        yield broker
    finally:
        broker.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controlling process stops the brokers this run started, once every worker is done."""
    if not hasattr(session.config, "workerinput"):
        stop_brokers(run_root(session.config._tmp_path_factory))  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[SchemaRegistry]:
    """The real Schema Registry (dev/schema-registry), started once per run: every test that
    uses it runs in one xdist process (see :func:`pytest_collection_modifyitems`)."""
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


def built_once(path: Path, build: Callable[[Path], None]) -> Path:
    """``path`` built by ``build`` once per run, whichever xdist worker asks first: the others
    wait on the lock and read it. Tests only read it (those that write take a copy)."""
    from filelock import FileLock

    with FileLock(str(path.with_suffix(".lock"))):
        done = path / ".built"
        if not done.exists():
            path.mkdir(parents=True, exist_ok=True)
            build(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """breast_cancer: rf, hgb, linear, mlp and every strategy, fitted on its held-out split."""
    from worker.tools.train import train

    def build(where: Path) -> None:
        train("breast_cancer", where / "model-store", seed=0, progress=False)

    return built_once(run_root(tmp_path_factory) / "trained", build) / "model-store"


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


def _module_scoped(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(d[-1].scope in ("module", "package") for d in defs if d)


def _weight(item: pytest.Item) -> int:
    """Longest first, so the run ends on short tests: the cluster, the fault lanes, the other
    broker tests, the slow tests, the rest."""
    if item.get_closest_marker("cluster"):
        return 0
    group = item.get_closest_marker("xdist_group")
    if group is not None and str(group.args[0]).startswith("faults-"):
        return 1
    kafka, slow = item.get_closest_marker("kafka"), item.get_closest_marker("slow")
    return 2 if kafka else 3 if slow else 4


FAULT_LANES = 2  # fault tests (tests/faults on the broker) running at once, at most


def _fault_lanes(items: list[pytest.Item]) -> dict[Path, str]:
    """The broker fault modules (the cluster's aside) dealt into ``FAULT_LANES`` groups, whole
    modules, the heaviest first onto the lightest lane: each lane runs on one process, one test
    after another, so the faults that mostly wait overlap each other and the unit tests without
    crowding two cores with more brokers' clients and workers than the timings allow."""
    weights: dict[Path, int] = {}
    for item in items:
        in_faults = item.path.parent.name == "faults" and item.path.parent.parent.name == "tests"
        if (
            in_faults
            and item.get_closest_marker("kafka")
            and not item.get_closest_marker("cluster")
        ):
            weights[item.path] = weights.get(item.path, 0) + (
                6 if item.get_closest_marker("slow") else 1
            )
    loads = [0] * FAULT_LANES
    lanes: dict[Path, str] = {}
    for path, weight in sorted(weights.items(), key=lambda pw: (-pw[1], str(pw[0]))):
        lane = loads.index(min(loads))
        loads[lane] += weight
        lanes[path] = f"faults-{lane + 1}"
    return lanes


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """How ``dev/test`` spreads the run over pytest-xdist processes (``--dist loadgroup``): a test
    that uses the broker is marked ``kafka``; the broker fault modules go into
    ``FAULT_LANES`` lanes; the Schema Registry's tests (which freeze it) share one process and
    so its one registry; any other module whose tests share a module-scoped fixture (a cluster,
    a worker kept running) goes to one process as one group, so the fixture is built once; the
    longest tests start first."""
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("kafka"):
            item.add_marker(pytest.mark.kafka)
    lanes = _fault_lanes(items)
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        if item.path in lanes:
            item.add_marker(pytest.mark.xdist_group(lanes[item.path]))
        elif "schema_registry" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("schema-registry"))
        elif _module_scoped(item):
            item.add_marker(pytest.mark.xdist_group(item.path.stem))
    items.sort(key=_weight)


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


_FIGURES: list[str] = []  # what the fault tests measured (tests/faults/conftest.py ``figures``)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":
        _FIGURES.extend(str(v) for k, v in report.user_properties if k == "streamfuse-figures")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("streamfuse fault figures")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def scenario(
    kafka: Broker,
    topics: Callable[..., Topics],
    group_factory: Callable[[str], str],
    trained_store: Path,
    test_rows: np.ndarray,
    tmp_path: Path,
) -> Callable[..., Scenario]:
    """``scenario(partitions=1, group="g")``: fresh topics with that many partitions and a fresh
    group named after ``group``, with the trained store, its test rows and ``tmp_path``
    (see tests/support/scenario.py)."""

    def make(partitions: int = 1, group: str = "g") -> Scenario:
        return Scenario(
            kafka, topics(partitions), group_factory(group), trained_store, test_rows, tmp_path
        )

    return make
