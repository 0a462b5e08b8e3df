"""``streamfuse rollout`` on a temporary store: start, status, pause, resume, abort."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from model_store import ModelStore
from worker.cli import main


@pytest.fixture
def store_dir(trained_copy: Any) -> Path:
    """The trained store with its first model published again as v2, not promoted."""
    root: Path = trained_copy.root
    name = trained_copy.model_names[0]
    shutil.copytree(root / name / "1", root / name / "2")
    manifest = root / name / "2" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": 1', '"version": 2'))
    return root


def cli(store_dir: Path, *args: str) -> int:
    return main(["rollout", "--store", str(store_dir), "--group", "grp", *args])


def test_start_status_pause_resume_abort(
    store_dir: Path, trained_copy: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = trained_copy.model_names[0]
    assert cli(store_dir, "status") == 0
    assert "no rollout recorded" in capsys.readouterr().out
    start = ["start", "--model", name, "--version", "2", "--steps", "1,5,25,50,100"]
    assert cli(store_dir, *start, "--min-labels", "300", "--promote-if-better") == 0
    assert "rollout v1 started at 1% of keys" in capsys.readouterr().out
    stored = ModelStore(store_dir).load_rollout("grp")
    assert stored is not None
    record = stored.record
    assert record["candidate"] == {"model": name, "version": 2}
    assert record["steps"] == [1, 5, 25, 50, 100] and record["status"] == "running"
    assert record["gates"]["min_labels"] == 300 and record["gates"]["promote_if_better"]
    assert cli(store_dir, *start) == 2  # one rollout at a time
    assert "is running" in capsys.readouterr().err

    assert cli(store_dir, "status") == 0
    table = capsys.readouterr().out
    assert f"rollout of grp (v1): {name} v2; running at 1% of keys" in table
    assert "   0      1%  running" in table and "   4    100%  -" in table
    assert "start" in table

    assert cli(store_dir, "pause") == 0
    assert "v2 paused at 1% of keys" in capsys.readouterr().out
    assert cli(store_dir, "pause") == 2
    assert "cannot pause a rollout that is paused" in capsys.readouterr().err
    assert cli(store_dir, "resume") == 0
    assert cli(store_dir, "abort") == 0
    assert "v4 aborted at 0% of keys" in capsys.readouterr().out
    history = ModelStore(store_dir).rollout_history("grp")
    assert [h.record["status"] for h in history] == ["running", "paused", "running", "aborted"]
    assert cli(store_dir, *start) == 0  # a new rollout after the last one ended


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["start"], "give --model M --version V, --strategy S, or both"),
        (["start", "--model", "MODEL"], "needs its version"),
        (["start", "--model", "MODEL", "--version", "9"], "has no version 9"),
        (["start", "--model", "MODEL", "--version", "1"], "already promoted"),
        (["start", "--strategy", "hedge", "--steps", "5,1"], "increasing"),
        (["start", "--strategy", "hedge", "--alpha", "2"], "alpha"),
    ],
)
def test_bad_starts_are_refused(
    store_dir: Path,
    trained_copy: Any,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    why: str,
) -> None:
    args = [trained_copy.model_names[0] if a == "MODEL" else a for a in args]
    assert cli(store_dir, *args) in (1, 2)
    assert why in capsys.readouterr().err
    assert ModelStore(store_dir).load_rollout("grp") is None


def test_a_strategy_candidate_and_the_group_from_the_config(
    trained_copy: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(trained_copy.config)
    assert main(["rollout", "--config", config, "start", "--strategy", "stacking"]) == 0
    assert main(["rollout", "--config", config, "status"]) == 0
    assert "strategy stacking; running at 1% of keys" in capsys.readouterr().out


def test_a_strategy_the_workers_do_not_configure_is_refused(
    trained_copy: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(trained_copy.config)
    assert main(["rollout", "--config", config, "start", "--strategy", "nope"]) == 2
    assert "'nope' is not configured (configured: " in capsys.readouterr().err
    assert not (trained_copy.root / "_rollouts").exists()
