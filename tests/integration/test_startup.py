"""Start-up checks of ``streamfuse run``: exit codes and messages that name the problem."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.support.kafka import Broker, unique, wait_for
from tests.support.scenario import Scenario
from tests.support.worker import Topics, write_config


def run(config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_unreachable_broker_retries_then_exits_1_with_a_clear_error(
    trained_store: Path, tmp_path: Path
) -> None:
    t = Topics("in", "out", "labels", "dlq")
    config = write_config(
        tmp_path / "c.yaml",
        store=trained_store,
        bootstrap="127.0.0.1:1",
        topics=t,
        group="g",
        kafka={"connect_timeout_s": 5},
    )
    started = time.monotonic()
    result = run(config)
    took = time.monotonic() - started
    print(f"unreachable broker: exit {result.returncode} after {took:.1f}s")
    assert result.returncode == 1
    assert "no Kafka broker answered at 127.0.0.1:1 within 5s" in result.stderr
    assert result.stderr.count("retrying") >= 1  # it did retry with backoff before giving up


@pytest.mark.kafka
def test_missing_topic_is_a_config_error_naming_the_key(
    kafka: Broker,
    topic_factory,
    trained_store: Path,
    tmp_path: Path,
    library: str,
) -> None:
    existing = topic_factory("present")
    t = Topics(existing, "nope-out-" + existing, existing, existing)
    config = write_config(
        tmp_path / "c.yaml", store=trained_store, bootstrap=kafka.bootstrap, topics=t, group="g"
    )
    result = run(config)
    assert result.returncode == 2, result.stderr
    assert "config key 'topics.output'" in result.stderr and "does not exist" in result.stderr


@pytest.mark.kafka
def test_missing_topics_are_created_when_asked(
    kafka: Broker,
    trained_store: Path,
    tmp_path: Path,
    library: str,
) -> None:
    suffix = unique("c")
    t = Topics(f"c-in-{suffix}", f"c-out-{suffix}", f"c-labels-{suffix}", f"c-dlq-{suffix}")
    config = write_config(
        tmp_path / "c.yaml",
        store=trained_store,
        bootstrap=kafka.bootstrap,
        topics=t,
        group=f"g-{suffix}",
    )
    data = yaml.safe_load(config.read_text())
    data["topics"].update(create=True, partitions=2)
    config.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        from tests.support.kafka import wait_for

        wait_for(
            lambda: {t.input, t.output, t.labels, t.dead_letter} <= set(kafka.admin.list_topics()),
            timeout=60,
            what="the topics to be created",
        )
        parts = {d["name"]: len(d["partitions"]) for d in kafka.admin.describe_topics([t.input])}
        # the real process answers its probes: ready once the group has assigned both partitions
        base = f"http://127.0.0.1:{data['metrics']['port']}"
        readyz = wait_for(lambda: _ready(base), timeout=60, what="/readyz 200")
        healthz = _get_json(base + "/healthz")
    finally:
        proc.terminate()
        proc.wait(30)
    assert parts[t.input] == 2
    assert proc.returncode == 0
    assert readyz["checks"]["assignment"] == "2 partitions"
    assert healthz[0] == 200 and healthz[1]["status"] == "alive"


def _get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:  # not listening yet
        return 0, {}


def _ready(base: str) -> dict | None:
    status, body = _get_json(base + "/readyz")
    return body if status == 200 else None


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"strategy": {"name": "soft_votes"}}, "strategy.name"),
        ({"models": [{"name": "rf"}, {"name": "nope"}]}, "models.1.name"),
        ({"batch": {"max_events": 0}}, "batch.max_events"),
        (
            {"kafka": {"bootstrap_servers": "x", "proccessing_guarantee": "exactly_once"}},
            "kafka.proccessing_guarantee",
        ),
    ],
)
def test_bad_config_exits_2_naming_the_key(
    trained_store: Path, tmp_path: Path, patch: dict, key: str
) -> None:
    t = Topics("in", "out", "labels", "dlq")
    config = write_config(
        tmp_path / "c.yaml", store=trained_store, bootstrap="127.0.0.1:1", topics=t, group="g"
    )
    data = yaml.safe_load(config.read_text())
    data.update(patch)
    config.write_text(yaml.safe_dump(data))
    result = run(config)
    print(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 2
    assert f"config key '{key}'" in result.stderr


def test_sigterm_while_loading_exits_zero(scenario: Callable[..., Scenario]) -> None:
    s = scenario(group="early")
    worker = s.worker(s.config(), "w.log")
    wait_for(lambda: "starting with" in worker.text(), timeout=60, what="the worker starting")
    worker.signal(signal.SIGTERM)  # while torch, scikit-learn and the models load
    code = worker.wait(60)
    text = worker.text()
    print(f"exit {code}; stopped before starting: {'stopped during start-up' in text}")
    assert code == 0, text
