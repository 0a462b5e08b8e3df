"""A hot swap on the loop's thread: the new snapshot is frozen out of the garbage collector's
reach without a full collection, which stopped every thread for about 140 ms (measured by
``python -m benchmarks swap``: the p99 of the events sent while a version was prepared and
swapped in fell from 235-282 ms to 63-136 ms)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from worker.config import settings_from_dict
from worker.inference.serving import build_serving
from worker.service.worker import Worker


def test_a_swapped_in_snapshot_is_frozen_without_a_full_collection(
    trained: Any, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "store": str(trained.root),
        "models": [{"name": n} for n in trained.model_names],
        "strategy": {"name": "soft_vote"},
    }
    settings = settings_from_dict(config, environ={})
    worker = Worker(settings, registry, freeze_gc=True)
    try:
        fresh = build_serving(worker.store, settings)
        monkeypatch.setattr(worker.reloader, "check", lambda serving, probe: fresh)
        collections: list[Any] = []
        monkeypatch.setattr(gc, "collect", lambda *a: collections.append(a) or 0)
        gc.unfreeze()
        young = len(gc.get_objects())
        worker.between_batches()
        assert worker.pipeline.serving is fresh
        assert collections == []  # no full pass at the swap
        assert len(gc.get_objects()) < young / 10  # everything alive was frozen
        assert gc.get_freeze_count() > young / 2
    finally:
        gc.unfreeze()
        worker.pipeline.close()
