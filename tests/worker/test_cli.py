"""The ``streamfuse`` command line: usage and config errors exit 2, and the store commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from model_store import ModelStore
from worker import __version__, cli

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv)`` → ``(exit code, stdout, stderr)``; argparse's own exits count too."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        try:
            code = cli.main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


MINIMAL = {"models": [{"name": "alpha"}], "strategy": {"name": "soft_vote"}}


# -- usage and config errors ------------------------------------------------------------------


def test_no_arguments_prints_usage_and_exits_2(run: Run) -> None:
    code, out, err = run()
    assert code == 2
    assert "usage: streamfuse" in err
    assert out == ""


def test_version(run: Run) -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert __version__ in out


@pytest.mark.parametrize(
    "argv",
    [["run"], ["nonsense"], ["train", "--dataset", "no_such_set", "--store", "s"], ["store"]],
)
def test_bad_usage_exits_2(run: Run, argv: list[str]) -> None:
    code, _, err = run(*argv)
    assert code == 2
    assert "usage:" in err


@pytest.mark.parametrize("command", ["run", "replay", "produce"])
def test_missing_config_file_exits_2_and_names_it(run: Run, tmp_path: Path, command: str) -> None:
    missing = tmp_path / "missing.yaml"
    extra = {"replay": ["--events", "e.jsonl"], "produce": ["--dataset", "wine"]}.get(command, [])
    code, _, err = run(command, "--config", str(missing), *extra)
    assert code == 2
    assert str(missing) in err
    assert "cannot read" in err


def test_unknown_config_key_exits_2_and_names_it(run: Run, tmp_path: Path) -> None:
    path = write_config(tmp_path / "sf.yaml", {**MINIMAL, "batch": {"max_event": 5}})
    code, out, err = run("run", "--config", str(path))
    assert code == 2
    assert "batch.max_event" in err
    assert "did you mean 'max_events'" in err
    assert out == ""


def test_invalid_config_value_exits_2_and_names_it(run: Run, tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "sf.yaml", {**MINIMAL, "kafka": {"processing_guarantee": "maybe"}}
    )
    code, _, err = run("replay", "--config", str(path), "--events", str(tmp_path / "e.jsonl"))
    assert code == 2
    assert "kafka.processing_guarantee" in err


def test_env_override_with_a_bad_value_exits_2(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path / "sf.yaml", MINIMAL)
    monkeypatch.setenv("STREAMFUSE_BATCH__MAX_EVENTS", "0")
    code, _, err = run("run", "--config", str(path))
    assert code == 2
    assert "batch.max_events" in err


# -- store ------------------------------------------------------------------------------------


@pytest.fixture
def store_dir(tmp_store: Path, publish_tiny: Callable[..., int]) -> Path:
    store = ModelStore(tmp_store)
    publish_tiny(store, "alpha", seed=1)
    publish_tiny(store, "alpha", seed=2)
    publish_tiny(store, "beta")
    return tmp_store


def listing(store: ModelStore) -> list[str]:
    """What ``store list`` should print, computed from the store API."""
    lines = []
    for name in store.models():
        active = store.active_version(name)
        versions = [f"{v}*" if v == active else str(v) for v in store.versions(name)]
        lines.append(f"{name}: {', '.join(versions)}")
    return lines


def test_store_list(run: Run, store_dir: Path) -> None:
    code, out, _ = run("store", "--store", str(store_dir), "list")
    assert code == 0
    assert out.splitlines() == listing(ModelStore(store_dir))
    assert "alpha: 1, 2*" in out.splitlines()


def test_store_list_through_the_config(run: Run, store_dir: Path, tmp_path: Path) -> None:
    relative = Path(store_dir.name)  # resolved against the config file's folder
    path = write_config(store_dir.parent / "sf.yaml", {**MINIMAL, "store": str(relative)})
    code, out, _ = run("store", "--config", str(path), "list")
    assert code == 0
    assert out.splitlines() == listing(ModelStore(store_dir))


def test_store_needs_a_store_or_a_config(run: Run) -> None:
    code, _, err = run("store", "list")
    assert code == 2
    assert "store" in err


@pytest.mark.parametrize("version", [None, 1])
def test_store_show(run: Run, store_dir: Path, version: int | None) -> None:
    argv = ["store", "--store", str(store_dir), "show", "alpha"]
    if version is not None:
        argv += ["--version", str(version)]
    code, out, _ = run(*argv)
    assert code == 0
    shown = json.loads(out)
    expected = ModelStore(store_dir).manifest("alpha", version)
    assert shown == json.loads(json.dumps(expected, default=str))
    assert shown["version"] == (version or 2)


def test_store_promote_and_rollback(run: Run, store_dir: Path) -> None:
    store = ModelStore(store_dir)
    code, out, _ = run("store", "--store", str(store_dir), "promote", "alpha", "1")
    assert code == 0
    assert out.strip() == "alpha: promoted v1"
    assert store.active_version("alpha") == 1
    code, out, _ = run("store", "--store", str(store_dir), "list")
    assert out.splitlines() == listing(store)
    assert "alpha: 1*, 2" in out.splitlines()

    code, out, _ = run("store", "--store", str(store_dir), "rollback", "alpha")
    assert code == 0
    assert out.strip() == "alpha: rolled back to v2"
    assert store.active_version("alpha") == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["promote", "alpha", "9"],
        ["rollback", "beta"],  # promoted once: nothing to roll back to
        ["show", "gamma"],
        ["show", "alpha", "--version", "7"],
    ],
)
def test_store_errors_exit_1(run: Run, store_dir: Path, argv: list[str]) -> None:
    before = ModelStore(store_dir).active_version("alpha")
    code, out, err = run("store", "--store", str(store_dir), *argv)
    assert code == 1
    assert err.startswith("streamfuse: ")
    assert out == ""
    assert ModelStore(store_dir).active_version("alpha") == before
