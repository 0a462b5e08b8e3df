"""``streamfuse replay --rollout``: the worker's rollout rehearsed over recorded events and
labels, the store only read. A clearly worse version is rolled back at its first step; a clearly
better one advances through every step to done, its promotion recorded, not made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.dummy import DummyClassifier

from model_store import ModelStore
from worker.accuracy.gates import Gates
from worker.cli import main
from worker.config import settings_from_dict
from worker.service.rollout_record import new_record
from worker.tools.rehearse import rehearse

pytestmark = pytest.mark.slow  # each loads a candidate version through a trial child

STEPS = [1, 5, 25, 50, 100]
MODEL = "rf"
N_EVENTS = 1_024
T0 = 1_790_000_000.0


@pytest.fixture
def world(trained_copy: Any, tmp_path: Path) -> dict[str, Any]:
    """The trained store with ``rf`` v2, a constant classifier (published, not promoted), one
    ``rf`` soft-voting config, and events (one every 10 ms) with their labels as files."""
    store = ModelStore(trained_copy.root)
    assert MODEL in trained_copy.model_names
    test = store.load_dataset("test").arrays
    X = np.asarray(test["X"], dtype=np.float64)
    y = np.asarray(test["y"])
    constant = DummyClassifier(strategy="most_frequent").fit(X, y)
    schema = store.manifest(MODEL).get("input_schema")
    assert store.publish(MODEL, constant, input_schema=schema, promote=False) == 2
    config = {
        "store": str(trained_copy.root),
        "models": [{"name": MODEL}],
        "strategy": {"name": "soft_vote"},
        "kafka": {"group_id": "grp"},
        "batch": {"max_events": 64},
    }
    rows = np.arange(N_EVENTS) % len(X)
    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    events.write_bytes(
        b"\n".join(
            orjson.dumps({"id": f"e{i}", "ts": T0 + i / 100, "features": X[r].tolist()})
            for i, r in enumerate(rows)
        )
    )
    labels.write_bytes(
        b"\n".join(orjson.dumps({"id": f"e{i}", "label": y[r].item()}) for i, r in enumerate(rows))
    )
    (tmp_path / "streamfuse.json").write_bytes(orjson.dumps(config))
    return {"store": store, "config": config, "events": events, "labels": labels, "dir": tmp_path}


def record(version: int, **gates: Any) -> dict[str, Any]:
    gates = {"min_labels": 60, "min_duration_s": 0, "alpha": 0.01, **gates}
    return new_record({"model": MODEL, "version": version}, STEPS, Gates(**gates), "test", 0.0)


def test_a_worse_version_is_rolled_back_at_its_first_step_and_the_store_is_untouched(
    world: dict[str, Any],
) -> None:
    store: ModelStore = world["store"]
    settings = settings_from_dict(world["config"], environ={})
    result = rehearse(settings, world["events"], world["labels"], record(2))
    assert [(m.entry["action"], m.entry["step"]) for m in result.moves] == [("rollback", 0)]
    assert result.record["status"] == "rolled_back"
    figures = result.moves[0].entry["figures"]
    assert figures["p_worse"] < 0.01 and figures["candidate_score"] < figures["champion_score"]
    assert result.moves[0].after_events == 64  # judged on the first batch's labels
    assert result.n_events == N_EVENTS and result.n_labelled > 0
    assert store.load_rollout("grp") is None and store.active_version(MODEL) == 1


def test_a_better_version_advances_through_every_step_and_its_promotion_is_not_made(
    world: dict[str, Any],
) -> None:
    store: ModelStore = world["store"]
    store.promote(MODEL, 2)  # the constant serves: v1 is the better candidate
    settings = settings_from_dict(world["config"], environ={})
    one_second = record(1, promote_if_better=True, min_duration_s=1.0)  # of event time
    result = rehearse(settings, world["events"], world["labels"], one_second)
    assert [(m.entry["action"], m.entry["share"]) for m in result.moves] == [
        ("advance", 5.0),
        ("advance", 25.0),
        ("advance", 50.0),
        ("advance", 100.0),
        ("done", 100.0),
    ]
    assert result.record["status"] == "done"
    # a step lasts a second of the events' time: 100 events here, never fewer
    after = [m.after_events for m in result.moves[:-1]]
    assert all(b - a >= 100 for a, b in zip([0, *after], after, strict=False)), after
    assert store.load_rollout("grp") is None and store.active_version(MODEL) == 2
    assert result.promoted == [(MODEL, 1)]


def test_the_command_prints_each_move_after_its_events(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replay", "--config", str(world["dir"] / "streamfuse.json")]
    argv += ["--events", str(world["events"]), "--labels", str(world["labels"])]
    argv += ["--rollout", "--model", MODEL, "--version", "2", "--min-labels", "60"]
    assert main([*argv, "--min-duration", "0", "--alpha", "0.01"]) == 0
    out = capsys.readouterr().out
    assert f"{N_EVENTS} events replayed" in out
    [line] = [ln for ln in out.splitlines() if "rollback" in ln]
    assert line.split()[1:3] == ["rollback", "0"]
    assert "the rollout ends rolled_back at step 0" in out
