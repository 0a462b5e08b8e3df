"""A starting worker warms every model on the thread that will serve it, before any batch
(:func:`worker.inference.warm.warm_threads`).

A model's first call on its fan-out thread is slow (threadpoolctl reads every loaded library
there, runtimes set up their per-thread state): inside the first batch's deadline that made a
healthy model miss ``on_model_error.timeout_ms`` on a loaded machine, and the batch went to the
dead-letter topic.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from model_store import LoadedModel, ModelNotFoundError, ModelStore
from worker.config import settings_from_dict
from worker.drift import PROFILE_NAME, read_profile, sample_rows
from worker.inference.warm import PROBE_ROWS
from worker.service.worker import Worker

MAX_EVENTS = 64


def test_every_model_is_warmed_at_the_batch_sizes_on_its_own_thread_before_serving(
    trained: Any,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[tuple[str, int, str]] = []
    predict = LoadedModel.predict_outputs

    def recorded(self: LoadedModel, X: np.ndarray) -> np.ndarray:
        calls.append((self.name, len(X), threading.current_thread().name))
        return predict(self, X)

    monkeypatch.setattr(LoadedModel, "predict_outputs", recorded)
    config = {
        "store": str(trained.root),
        "models": [{"name": n} for n in trained.model_names],
        "strategy": {"name": "soft_vote"},
        "batch": {"max_events": MAX_EVENTS},
    }
    with caplog.at_level(logging.INFO, "streamfuse"):
        worker = Worker(settings_from_dict(config, environ={}), registry)
    try:
        for name in trained.model_names:
            on_its_thread = {
                n for m, n, thread in calls if m == name and thread.startswith(f"model-{name}")
            }
            assert on_its_thread == {1, MAX_EVENTS}, (name, calls)
            seconds = registry.get_sample_value("streamfuse_model_warmup_seconds", {"model": name})
            assert seconds is not None and seconds > 0
        [line] = [r.getMessage() for r in caplog.records if "warmed at" in r.getMessage()]
        assert line.startswith(f"models warmed at 1/{MAX_EVENTS} rows: ")
        assert all(name in line for name in trained.model_names)
    finally:
        worker.pipeline.close()


def test_without_a_held_out_set_the_models_are_warmed_on_rows_drawn_from_the_reference_profile(
    trained: Any, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before a live batch, a new version is warmed on the store's held-out rows; a store
    without them warms it on rows drawn from the features' reference profile (issue 25, Build
    4), not on zeros, whose runtime paths are not the data's."""
    seen: list[np.ndarray] = []
    predict = LoadedModel.predict_outputs

    def recorded(self: LoadedModel, X: np.ndarray) -> np.ndarray:
        if threading.current_thread().name.startswith("model-"):
            seen.append(np.array(X, copy=True))
        return predict(self, X)

    def no_dataset(self: ModelStore, name: str, version: int | None = None) -> Any:
        raise ModelNotFoundError(f"no data set {name!r}")

    monkeypatch.setattr(LoadedModel, "predict_outputs", recorded)
    monkeypatch.setattr(ModelStore, "load_dataset", no_dataset)
    config = {
        "store": str(trained.root),
        "models": [{"name": n} for n in trained.model_names],
        "strategy": {"name": "soft_vote"},
        "batch": {"max_events": MAX_EVENTS},
    }
    worker = Worker(settings_from_dict(config, environ={}), registry)
    try:
        stored = ModelStore(trained.root).load_profile(PROFILE_NAME)
        features, _ = read_profile(
            stored.meta, stored.arrays, worker.pipeline.serving.schema.n_features
        )
        drawn = sample_rows(features, PROBE_ROWS)
        assert seen and {len(X) for X in seen} == {1, MAX_EVENTS}
        for X in seen:
            np.testing.assert_array_equal(X, np.resize(drawn, X.shape))
        assert (drawn >= features.low).all() and (drawn <= features.high).all()
        assert not (drawn == 0).all(axis=0).any()  # no feature left at zero
        assert worker.reloader.synthetic is drawn or np.array_equal(
            worker.reloader.synthetic, drawn
        )
        assert worker.rollout.synthetic is worker.reloader.synthetic
    finally:
        worker.pipeline.close()
