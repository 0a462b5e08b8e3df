"""``streamfuse train`` loads the models it publishes as start-up does (issue 23): each is
first tried in a child within ``store.limits``, since the store may be one others write and
what is loaded back is its files, not the objects fitted in this process. ``store publish``
takes the frameworks the store's registry knows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import model_store._trial
from model_store import FILE_ENDINGS, FRAMEWORKS
from worker import cli
from worker.tools.train import train


@pytest.mark.slow  # trains, then loads each model in a trial child
def test_train_tries_the_models_it_loads_back_in_a_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[list[tuple[str, int]]] = []
    real = model_store._trial._run_child

    def recorded(store: Any, candidates: Any, threads: int) -> Any:
        tried.append([(c.name, c.version) for c in candidates])
        return real(store, candidates, threads)

    monkeypatch.setattr(model_store._trial, "_run_child", recorded)
    report = train("wine", tmp_path / "store", models=("rf", "linear"), progress=False)
    assert tried == [[("rf", 1), ("linear", 1)]]  # one child, both models, before their use
    assert [row[1] for row in report.rows[:2]] == ["rf", "linear"]

    tried.clear()  # a store that exists already: its versions 2 are tried too
    train("wine", tmp_path / "store", models=("rf", "linear"), progress=False)
    assert tried == [[("rf", 1), ("linear", 1)], [("rf", 2), ("linear", 2)]]


def test_store_publish_takes_and_shows_the_registry_s_frameworks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish = ["store", "--store", str(tmp_path / "s"), "publish", "m", str(tmp_path / "m.pkl")]
    with pytest.raises(SystemExit) as exited:
        cli.main([*publish, "--framework", "pickle"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'pickle' (choose from " + ", ".join(map(repr, FRAMEWORKS)) in err
    with pytest.raises(SystemExit):
        cli.main(["store", "--store", str(tmp_path / "s"), "publish", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name, endings in FILE_ENDINGS.items():
        assert f"'{name}' ({' or '.join(endings)})" in shown
