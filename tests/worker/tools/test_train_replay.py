"""``streamfuse train`` (deterministic, scores, config) and ``streamfuse replay`` (backtests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

import combiners
from model_store import ModelStore
from worker import cli
from worker.accuracy.scoring import score
from worker.config import load_settings
from worker.inference.models import ModelSet
from worker.inference.strategies import build_strategies
from worker.tools.datasets import load_dataset
from worker.tools.replay import replay
from worker.tools.train import CLASSIFICATION_STRATEGIES, train


def test_splits_are_disjoint_and_cover_the_data(trained: Any) -> None:
    ds = load_dataset(trained.dataset, seed=trained.seed)
    parts = [ds.splits[s] for s in ("train", "heldout", "test")]
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(ds.y)))
    assert [len(p) for p in parts] == pytest.approx(
        [0.6 * len(ds.y), 0.2 * len(ds.y), 0.2 * len(ds.y)], abs=1
    )
    again = load_dataset(trained.dataset, seed=trained.seed)
    for split in ds.splits:
        np.testing.assert_array_equal(ds.splits[split], again.splits[split])


def test_report_scores_are_the_stored_models_scored_on_the_test_split(trained: Any) -> None:
    store = ModelStore(trained.root)
    test = store.load_dataset("test").arrays
    X, y = np.asarray(test["X"]), np.asarray(test["y"])
    kind = trained.report.kind
    assert kind == "classification"
    expected = {}
    P = np.stack([store.load(n).predict_outputs(X) for n in trained.model_names])
    for name, P_m in zip(trained.model_names, P, strict=True):
        expected[("model", name)] = score(kind, P_m, y)
    for name in trained.strategy_names:
        stored = store.load_strategy(name)
        expected[("strategy", name)] = score(
            kind, combiners.load_state(stored.meta, stored.arrays).combine(P), y
        )
    got = {(scope, name): s for scope, name, s in trained.report.rows}
    assert got.keys() == expected.keys()
    for key, scores in expected.items():
        assert got[key] == pytest.approx(scores, rel=1e-9), key
    assert set(trained.strategy_names) == set(CLASSIFICATION_STRATEGIES)
    table = trained.report.table()
    for scope, name, scores in trained.report.rows:
        assert (
            f"| {scope} | {name} | {scores['accuracy']:.4f} | {scores['log_loss']:.4f} |" in table
        )


@pytest.mark.slow
def test_train_is_deterministic_for_a_seed(trained: Any, tmp_path: Path) -> None:
    config_out = tmp_path / "elsewhere" / "conf" / "sf.yaml"
    root = tmp_path / "second" / "store"
    report = train(trained.dataset, root, seed=trained.seed, config_out=config_out, progress=False)
    assert report.rows == trained.report.rows  # identical held-out scores, exactly

    first, second = ModelStore(trained.root), ModelStore(root)
    X = np.asarray(first.load_dataset("test").arrays["X"])
    np.testing.assert_array_equal(X, np.asarray(second.load_dataset("test").arrays["X"]))
    for name in trained.model_names:
        np.testing.assert_array_equal(
            first.load(name).predict_outputs(X), second.load(name).predict_outputs(X), err_msg=name
        )
    P = np.stack([first.load(n).predict_outputs(X) for n in trained.model_names])
    for name in trained.strategy_names:
        a, b = first.load_strategy(name), second.load_strategy(name)
        np.testing.assert_array_equal(
            combiners.load_state(a.meta, a.arrays).combine(P),
            combiners.load_state(b.meta, b.arrays).combine(P),
            err_msg=name,
        )

    # The config written elsewhere still finds its store.
    assert report.config_path == config_out
    settings = load_settings(config_out, environ={})
    assert settings.store.path.resolve() == root.resolve()


def test_train_writes_a_config_that_loads_and_serves(trained: Any) -> None:
    assert trained.config == trained.root.parent / "streamfuse.yaml"
    settings = load_settings(trained.config, environ={})
    assert settings.store.path.resolve() == trained.root.resolve()
    assert settings.model_names == trained.model_names
    assert settings.strategy.name == "soft_vote"
    assert {s.name for s in settings.shadow_strategies} == set(trained.strategy_names) - {
        "soft_vote"
    }
    store = ModelStore(settings.store.path)
    model_set = ModelSet(store, settings.models)
    built = build_strategies(store, model_set, settings.strategy, settings.shadow_strategies)
    assert all(s.source.startswith("store") for s in built)


# -- replay -----------------------------------------------------------------------------------


def write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture
def replay_files(trained: Any, tmp_path: Path) -> dict[str, Any]:
    """Events from the test split (plus two bad lines), labels for all but the first three."""
    store = ModelStore(trained.root)
    test = store.load_dataset("test").arrays
    X, y = np.asarray(test["X"], dtype=np.float64), np.asarray(test["y"])
    classes = store.manifest(trained.model_names[0])["classes"]
    ids = [f"wine-{i}" for i in range(len(X))]
    events = [
        orjson.dumps({"id": i, "features": row.tolist()}) for i, row in zip(ids, X, strict=True)
    ]
    events[5:5] = [b"not json", orjson.dumps({"id": "short", "features": [1.0]})]
    labelled = list(range(3, len(X)))
    labels = [orjson.dumps({"id": ids[i], "label": classes[int(y[i])]}) for i in labelled]
    labels.append(orjson.dumps({"id": "unknown-id", "label": classes[0]}))
    return {
        "events": write_jsonl(tmp_path / "events.jsonl", events),
        "labels": write_jsonl(tmp_path / "labels.jsonl", labels),
        "X": X,
        "y": y,
        "labelled": np.asarray(labelled),
        "n_events": len(events),
    }


def expected_scores(
    trained: Any, X: np.ndarray, y: np.ndarray, sel: np.ndarray
) -> dict[tuple[str, str], dict[str, float]]:
    store = ModelStore(trained.root)
    settings = load_settings(trained.config, environ={})
    P = np.stack([store.load(n).predict_outputs(X) for n in settings.model_names])
    out = {
        ("model", n): score("classification", P[m][sel], y[sel])
        for m, n in enumerate(settings.model_names)
    }
    for ref in (settings.strategy, *settings.shadow_strategies):
        stored = store.load_strategy(ref.name)
        combined = combiners.load_state(stored.meta, stored.arrays).combine(P)
        out[("strategy", ref.name)] = score("classification", combined[sel], y[sel])
    return out


@pytest.mark.parametrize("max_events", [512, 7])
def test_replay_scores_equal_direct_scoring(
    trained: Any, replay_files: dict[str, Any], max_events: int
) -> None:
    settings = load_settings(
        trained.config, environ={"STREAMFUSE_BATCH__MAX_EVENTS": str(max_events)}
    )
    report = replay(settings, replay_files["events"], replay_files["labels"])
    n_rows = len(replay_files["X"])
    assert report.n_events == replay_files["n_events"] == n_rows + 2
    assert report.n_predicted == n_rows
    assert report.n_dead_lettered == 2
    assert report.n_labelled == len(replay_files["labelled"])
    expected = expected_scores(
        trained, replay_files["X"], replay_files["y"], replay_files["labelled"]
    )
    got = {(scope, name): s for scope, name, s in report.rows}
    assert got.keys() == expected.keys()
    for key, scores in expected.items():
        # float32 torch outputs move in the 8th digit when the batch is cut differently
        assert got[key] == pytest.approx(scores, rel=1e-6, abs=1e-9), key


def test_replay_without_labels_only_counts(trained: Any, replay_files: dict[str, Any]) -> None:
    report = replay(load_settings(trained.config, environ={}), replay_files["events"])
    assert (report.n_predicted, report.n_dead_lettered, report.n_labelled) == (
        len(replay_files["X"]),
        2,
        0,
    )
    assert report.rows == []


def test_replay_command_prints_the_scores(
    trained: Any, replay_files: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "replay",
            "--config",
            str(trained.config),
            "--events",
            str(replay_files["events"]),
            "--labels",
            str(replay_files["labels"]),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    n = len(replay_files["X"])
    assert (
        f"{n + 2} events: {n} predicted, 2 dead-lettered, {len(replay_files['labelled'])} labelled"
        in out
    )
    expected = expected_scores(
        trained, replay_files["X"], replay_files["y"], replay_files["labelled"]
    )
    printed = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in {"model", "strategy"}:
            printed[(cells[0], cells[1])] = {
                "accuracy": float(cells[2]),
                "log_loss": float(cells[3]),
            }
    assert printed.keys() == expected.keys()
    for key, scores in expected.items():
        for metric, value in scores.items():
            assert printed[key][metric] == pytest.approx(value, abs=5e-5 + 1e-9), (key, metric)


def test_produce_refuses_a_data_set_the_store_was_not_trained_on(
    trained: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["produce", "--config", str(trained.config), "--dataset", "digits"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"the store {trained.root} holds the test split of 'wine', not 'digits'" in err
    assert "give --dataset wine, or send your own rows with --data FILE" in err


def test_the_regression_config_has_no_two_strategies_that_compute_the_same(
    tmp_path: Path,
) -> None:
    from worker.tools.fit import REGRESSION_STRATEGIES, write_config

    rng = np.random.default_rng(0)
    y = rng.normal(size=300) * 50 + 150
    P = np.stack([y + rng.normal(scale=s, size=300) for s in (5, 20, 40)])[..., None]
    same = [
        combiners.get_combiner(name, task="regression").fit(P[:, :200], y[:200]).combine(P[:, 200:])
        for name in ("weighted_sum", "stacking")
    ]
    np.testing.assert_allclose(same[0], same[1], rtol=1e-10)  # why only one is kept
    assert "weighted_sum" in REGRESSION_STRATEGIES and "stacking" not in REGRESSION_STRATEGIES
    write_config(tmp_path / "c.yaml", tmp_path / "store", ["a", "b"], "regression", "k:9092")
    config = yaml.safe_load((tmp_path / "c.yaml").read_text())
    served = [config["strategy"]["name"], *(s["name"] for s in config["shadow_strategies"])]
    assert sorted(served) == sorted(REGRESSION_STRATEGIES)
    assert "stacking" not in served
