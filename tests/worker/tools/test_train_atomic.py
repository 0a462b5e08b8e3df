"""``streamfuse train`` publishes models, strategies and config together, or nothing: a model
that fails is one line naming it (exit 2), and the store and config are as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model_store import ModelStore, UnsafeModelError
from worker import cli
from worker.tools import train as train_module

pytestmark = pytest.mark.slow  # each case runs streamfuse train

ARGS = ("--dataset", "wine", "--models", "rf,linear,mlp")


def refuse_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store refuses ``linear`` at publish, as it refused a LightGBM tree it misread."""
    publish = ModelStore.publish

    def refusing(self: ModelStore, name: str, model: Any, **kwargs: Any) -> int:
        if name == "linear":
            raise UnsafeModelError(name, None, "model.skops", reason="tree 353: injected\nmore")
        return publish(self, name, model, **kwargs)

    monkeypatch.setattr(ModelStore, "publish", refusing)


def run_train(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str]:
    code = cli.main(["train", *ARGS, *map(str, argv)])
    return code, capsys.readouterr().err


def test_a_refused_model_leaves_no_new_store_and_no_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    refuse_linear(monkeypatch)
    code, err = run_train(capsys, "--store", tmp_path / "store")
    assert code == 2
    assert err.strip().splitlines() == [
        "streamfuse: model 'linear': refusing model 'linear', file 'model.skops': tree 353: "
        "injected"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, scratch or config


def test_a_model_that_fails_to_fit_is_named_and_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory\nTraceback lines")

    monkeypatch.setattr(train_module, "fit_torch", failing)
    (tmp_path / "store").mkdir()  # an empty store directory is a new store too
    code, err = run_train(capsys, "--store", tmp_path / "store")
    assert code == 2
    assert err.strip().splitlines() == ["streamfuse: model 'mlp': out of memory"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
    assert list((tmp_path / "store").iterdir()) == []


def test_a_refused_model_leaves_an_existing_store_and_config_as_they_were(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    code, err = run_train(capsys, "--store", store)
    assert code == 0, err
    config = (tmp_path / "streamfuse.yaml").read_bytes()
    s = ModelStore(store)
    before = {
        "models": {n: s.versions(n) for n in s.models()},
        "strategies": {n: s.strategy_versions(n) for n in s.strategies()},
        "datasets": {n: s.dataset_versions(n) for n in s.datasets()},
        "profiles": {n: s.profile_versions(n) for n in s.profiles()},
    }
    assert before["models"] == {"rf": [1], "linear": [1], "mlp": [1]}
    refuse_linear(monkeypatch)
    code, err = run_train(capsys, "--store", store, "--seed", 1)
    assert code == 2 and "model 'linear'" in err
    after = {
        "models": {n: s.versions(n) for n in s.models()},
        "strategies": {n: s.strategy_versions(n) for n in s.strategies()},
        "datasets": {n: s.dataset_versions(n) for n in s.datasets()},
        "profiles": {n: s.profile_versions(n) for n in s.profiles()},
    }
    assert after == before
    assert (tmp_path / "streamfuse.yaml").read_bytes() == config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "streamfuse.yaml"]
    monkeypatch.undo()
    code, err = run_train(capsys, "--store", store, "--seed", 1)  # again, nothing in the way
    assert code == 0, err
    assert {n: s.active_version(n) for n in s.models()} == {"rf": 2, "linear": 2, "mlp": 2}
    assert s.load_strategy("stacking").fitted_on == {"rf": 2, "linear": 2, "mlp": 2}
