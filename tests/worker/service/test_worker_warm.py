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

from model_store import LoadedModel
from worker.config import settings_from_dict
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
