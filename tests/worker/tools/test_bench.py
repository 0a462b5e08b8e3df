"""``streamfuse bench``: the user's config and store, in process, on the run's own topics."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml
from kafka import KafkaAdminClient

from model_store import ModelStore
from tests.support.kafka import Broker
from tests.support.worker import Topics, write_config
from worker import cli
from worker.config import load_settings
from worker.tools.bench import _events, bench_settings

N_EVENTS = 1_500


def config(tmp_path: Path, store: Path, bootstrap: str, group: str) -> Path:
    topics = Topics("user-in", "user-out", "user-labels", "user-dlq")
    path = write_config(
        tmp_path / "streamfuse.yaml", store=store, bootstrap=bootstrap, topics=topics, group=group
    )
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["strategy"]["promote"] = {"min_labels": 50}  # champion/challenger, as users may run it
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_the_run_uses_its_own_topics_and_group(trained_store: Path, tmp_path: Path) -> None:
    settings = load_settings(config(tmp_path, trained_store, "127.0.0.1:1", "users"))
    ran = bench_settings(settings, "abc")
    assert (ran.topics.input, ran.topics.output, ran.topics.dead_letter) == (
        "streamfuse-bench-abc-in",
        "streamfuse-bench-abc-out",
        "streamfuse-bench-abc-dlq",
    )
    assert ran.topics.labels is None and ran.strategy.promote is None
    assert ran.kafka.group_id == "streamfuse-bench-abc" and not ran.metrics.enabled
    assert settings.strategy.promote is not None  # the user's settings are left as they were
    assert (ran.models, ran.batch, ran.kafka.library) == (
        settings.models,
        settings.batch,
        settings.kafka.library,
    )


def test_events_cycle_through_the_rows(trained_store: Path, tmp_path: Path) -> None:
    """The store's test split by default, the rows of ``--data`` when given; ids unique."""
    settings = load_settings(config(tmp_path, trained_store, "127.0.0.1:1", "users"))
    rows = np.asarray(ModelStore(trained_store).load_dataset("test").arrays["X"])[:5]
    data = tmp_path / "rows.csv"
    header = ",".join(f"f{j}" for j in range(rows.shape[1]))
    np.savetxt(data, rows, delimiter=",", header=header, comments="")
    from_file = [orjson.loads(v) for v in _events(settings, data, 12)]
    assert [d["id"] for d in from_file] == [f"bench-{i}" for i in range(12)]
    assert [d["features"] for d in from_file] == [rows[i % 5].tolist() for i in range(12)]
    split = [orjson.loads(v) for v in _events(settings, None, 3)]
    assert [d["features"] for d in split] == rows[:3].tolist()


def test_the_command_line_stays_light() -> None:
    """``streamfuse bench --help`` loads neither the models' libraries nor a Kafka client."""
    code = (
        "import sys; from worker import cli; cli.build_parser(); "
        "print(sorted({'torch', 'sklearn', 'kafka', 'benchmarks'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_events_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--config", str(tmp_path / "none.yaml"), "--events", "0"]) == 2
    assert "--events" in capsys.readouterr().err


@pytest.mark.kafka
def test_bench_serves_the_users_models_and_leaves_nothing_behind(
    kafka: Broker,
    trained_store: Path,
    tmp_path: Path,
    group_factory: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = config(tmp_path, trained_store, kafka.bootstrap, group_factory("bench-user"))
    assert cli.main(["bench", "--config", str(path), "--events", str(N_EVENTS)]) == 0

    out = capsys.readouterr().out
    rows = dict(
        line.strip("|").split(" | ", 1) for line in out.splitlines() if line.startswith("| ")
    )
    rows = {k.strip(): v.strip(" |") for k, v in rows.items()}
    assert rows["events"] == f"{N_EVENTS:,} ({N_EVENTS:,} published, 0 dead-lettered)"
    assert float(rows["events/s, first delivered batch to last"].replace(",", "")) > 0
    for name in ("rf", "hgb", "linear", "mlp"):
        assert float(rows[f"predict {name}, per batch (mean)"].removesuffix(" ms")) > 0
    for name in ("soft_vote", "hard_vote", "stacking"):
        assert f"combine {name}, per batch (mean)" in rows
    admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    try:
        left = [t for t in admin.list_topics() if t.startswith("streamfuse-bench-")]
        assert left == [] and "user-in" not in admin.list_topics()
    finally:
        admin.close()
