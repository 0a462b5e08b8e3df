"""The held-out baseline the accuracy alert compares with: the scores ``streamfuse train``
printed for the same versions on the same test split."""

from __future__ import annotations

import pytest

from model_store import ModelStore
from tests.worker.conftest import TrainedStore
from worker.config import load_settings
from worker.inference.serving import build_serving
from worker.service.heldout import heldout_scores


def test_heldout_scores_are_the_scores_train_printed(trained: TrainedStore) -> None:
    settings = load_settings(trained.config)
    store = ModelStore(trained.root)
    rows = heldout_scores(store, build_serving(store, settings))
    got = {(scope, name, metric): value for scope, name, metric, value in rows}
    served = {"model": set(trained.model_names), "strategy": set()}
    served["strategy"] = {settings.strategy.name} | {s.name for s in settings.shadow_strategies}
    assert {(scope, name) for scope, name, _ in got} == {
        (scope, name) for scope, names in served.items() for name in names
    }
    for scope, name, scores in trained.report.rows:
        for metric, value in scores.items():
            if name in served[scope]:
                assert got[(scope, name, metric)] == pytest.approx(value, abs=1e-9)


def test_a_store_without_data_exports_no_baseline(trained_copy: TrainedStore) -> None:
    settings = load_settings(trained_copy.config)
    store = ModelStore(trained_copy.root)
    serving = build_serving(store, settings)

    class NoData:
        def load_dataset(self, name: str) -> None:
            raise FileNotFoundError(name)

    assert heldout_scores(NoData(), serving) == []  # type: ignore[arg-type]
