"""A version reaching the worker by hot reload (issue 25, Build 4): warmed at the worker's batch
sizes before it serves, and refused when it answers otherwise than at publish."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from model_store import LoadedModel, ModelStore
from tests.model_store.hostile import swap_version
from worker.config import settings_from_dict
from worker.errors import ConfigError
from worker.inference.reload import Reloader
from worker.inference.serving import Serving, build_serving
from worker.inference.store import open_store
from worker.metrics import Metrics

pytestmark = pytest.mark.slow  # candidates load in trial children

MAX_EVENTS = 48


@pytest.fixture
def store_dir(tmp_path: Path, publish_tiny: Callable[..., int]) -> Path:
    store = ModelStore(tmp_path / "store")
    for name in ("alpha", "beta"):
        publish_tiny(store, name)
    X = np.random.default_rng(0).normal(size=(30, 3))
    store.publish_dataset("heldout", {"X": X, "y": (X[:, 0] > 0).astype(np.int64)})
    return tmp_path / "store"


def _world(
    store_dir: Path, registry: CollectorRegistry, warmup: bool = True
) -> tuple[Serving, Reloader]:
    """The snapshot served from ``store_dir`` and a hot reloader for it."""
    settings = settings_from_dict(
        {
            "store": {"path": str(store_dir)},
            "models": [{"name": "alpha"}, {"name": "beta"}],
            "strategy": {"name": "soft_vote"},
            "batch": {"max_events": MAX_EVENTS},
            "reload": {"warmup": warmup},
        },
        environ={},
    )
    store = open_store(settings.store)
    return build_serving(store, settings), Reloader(store, settings, Metrics(registry))


def _prepared(reloader: Reloader, serving: Serving) -> Serving | None:
    """What one hot reload prepared from ``serving`` (None: nothing, or refused)."""
    assert reloader.check(serving, None) is None  # starts the preparation
    assert reloader.wait(120)
    return reloader.check(serving, None)


@pytest.mark.parametrize("warmup", [True, False])
def test_a_hot_reloaded_version_is_warmed_at_the_batch_sizes_before_it_serves(
    store_dir: Path,
    publish_tiny: Callable[..., int],
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
    warmup: bool,
) -> None:
    """``reload.warmup`` off (only to measure what the warm-up saves): swapped in cold."""
    serving, reloader = _world(store_dir, registry, warmup)
    labels = {"model": "alpha"}
    before = registry.get_sample_value("streamfuse_model_warmup_seconds", labels)
    publish_tiny(ModelStore(store_dir), "alpha", seed=9)  # v2, promoted
    calls: list[tuple[str, int, int]] = []
    predict = LoadedModel.predict_outputs

    def counted(self: LoadedModel, X: np.ndarray) -> np.ndarray:
        calls.append((self.name, self.version, len(X)))
        return predict(self, X)

    monkeypatch.setattr(LoadedModel, "predict_outputs", counted)
    reloaded = _prepared(reloader, serving)
    assert reloaded is not None and reloaded.versions == {"alpha": 2, "beta": 1}
    seconds = registry.get_sample_value("streamfuse_model_warmup_seconds", labels)
    assert before is None or math.isnan(before)
    sizes = {n for name, version, n in calls if (name, version) == ("alpha", 2)}
    if not warmup:
        assert seconds is None or math.isnan(seconds)
        assert not {1, MAX_EVENTS} & sizes  # only the load's probe and the published rows
        return
    assert seconds is not None and 0 < seconds < 60
    # the new version predicted one event and a full batch before the swap
    assert {1, MAX_EVENTS} <= sizes


@pytest.mark.parametrize(("shift", "swapped"), [(1e-8, True), (0.02, False)])
def test_a_version_that_answers_otherwise_than_at_publish_is_refused(
    store_dir: Path,
    publish_tiny: Callable[..., int],
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    shift: float,
    swapped: bool,
) -> None:
    serving, reloader = _world(store_dir, registry)  # serving alpha v1
    store = ModelStore(store_dir)
    version = publish_tiny(store, "alpha", seed=9)
    recorded = store.load("alpha", version).published
    assert recorded is not None
    # what the worker loads now answers `shift` away from what publish recorded (as another
    # library version would): the record rewritten, its manifest entry fixed (unsigned store)
    buffer = io.BytesIO()
    np.savez(buffer, X=recorded["X"], outputs=recorded["outputs"] + shift)
    swap_version(store_dir, "alpha", version, "published_outputs.npz", buffer.getvalue())
    with caplog.at_level(logging.ERROR, logger="streamfuse"):
        reloaded = _prepared(reloader, serving)
    refused = registry.get_sample_value(
        "streamfuse_model_reloads_total", {"model": "alpha", "outcome": "refused"}
    )
    if swapped:
        assert reloaded is not None and reloaded.versions["alpha"] == version
        assert not refused
        return
    assert reloaded is None
    assert refused == 1
    message = caplog.text
    assert "refusing alpha v2, still serving v1" in message
    assert "answers differently from what was published: largest difference 0.02" in message


@pytest.mark.parametrize(("shift", "starts"), [(1e-8, True), (0.02, False)])
def test_start_up_refuses_a_version_that_answers_otherwise_than_at_publish(
    store_dir: Path, registry: CollectorRegistry, shift: float, starts: bool
) -> None:
    store = ModelStore(store_dir)
    recorded = store.load("beta", 1).published
    assert recorded is not None
    buffer = io.BytesIO()
    np.savez(buffer, X=recorded["X"], outputs=recorded["outputs"] + shift)
    swap_version(store_dir, "beta", 1, "published_outputs.npz", buffer.getvalue())
    if starts:
        serving, _ = _world(store_dir, registry)
        assert serving.versions == {"alpha": 1, "beta": 1}
        return
    with pytest.raises(ConfigError, match="'beta' version 1: it answers differently") as info:
        _world(store_dir, registry)
    assert info.value.key == "models"
