"""Every artifact reader refuses, never raises: a fuzz over the metadata fields and arrays of
each stored artifact the worker reads (reference profiles, fitted strategies, held-out data sets,
decisions). Whatever the fields hold, the worker gets a working artifact or the store's refusal
(drift off, a refit, a :class:`ConfigError` at start-up, a refused reload), never a
``TypeError`` from three frames into a reader.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from model_store import IntegrityError, ModelStore, PublishError
from tests.worker.accuracy.test_promotion import settings_for
from tests.worker.conftest import TrainedStore
from worker.config import load_settings
from worker.drift import PROFILE_NAME
from worker.errors import ConfigError
from worker.inference.models import ModelSet
from worker.inference.serving import Serving, build_serving
from worker.inference.strategies import build_strategies
from worker.metrics import Metrics
from worker.service.promotion import Promotion
from worker.service.reference import open_drift
from worker.tools.decisions import strategy_command
from worker.tools.fit import kept_reference

pytestmark = pytest.mark.slow  # each case trains and serves a model set

FUZZ = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index of a JSON document, depth first (the document itself first)."""
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:4]):
            found += _paths(value, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, doc: dict[str, Any], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """``doc`` with one field (at any depth) replaced by any JSON value, or removed."""
    paths = [p for p in _paths(doc) if p and p[0] not in keep]
    path = draw(st.sampled_from(paths))
    out = copy.deepcopy(doc)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and draw(st.booleans()) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return out


@st.composite
def bad_arrays(draw: st.DrawFn, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``arrays`` with one array dropped or replaced by another dtype, shape or values."""
    out = dict(arrays)
    key = draw(st.sampled_from(sorted(arrays)))
    value = np.asarray(arrays[key])
    how = draw(st.sampled_from(["drop", "str", "shape", "empty", "inf", "nan", "huge", "int"]))
    if how == "drop":
        del out[key]
    elif how == "str":
        out[key] = value.astype(str)
    elif how == "shape":
        out[key] = value.reshape(-1)[: max(1, value.size - 1)] if value.ndim > 1 else value[:, None]
    elif how == "empty":
        out[key] = value[:0]
    elif how in ("inf", "nan", "huge"):
        filler = {"inf": np.inf, "nan": np.nan, "huge": 1e300}[how]
        out[key] = np.full(value.shape, filler)
    else:
        out[key] = np.full(value.shape, draw(st.integers(-5, 5)), dtype=np.int64)
    return out


def _batch(store: ModelStore, serving: Serving) -> tuple[np.ndarray, ...]:
    X = np.asarray(store.load_dataset("test").arrays["X"][:32], dtype=np.float64)
    P = np.stack([fn(X) for fn in serving.predict_fns])
    return X, P


# -- reference profiles ------------------------------------------------------------------------


def test_a_malformed_profile_turns_drift_off_never_raises(
    trained_copy: TrainedStore, registry: CollectorRegistry
) -> None:
    cfg = load_settings(trained_copy.config)
    store = ModelStore(trained_copy.root)
    serving = build_serving(store, cfg)
    good = store.load_profile(PROFILE_NAME)
    X, P = _batch(store, serving)
    outputs = {s.name: s.combiner.combine(P) for s in serving.strategies}
    metrics = Metrics(registry)

    def watch(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        store.publish_profile(PROFILE_NAME, meta, arrays, good.fitted_on)
        before = registry.get_sample_value("streamfuse_drift_profiles_refused_total") or 0.0
        monitor = open_drift(store, serving, cfg.drift, metrics)
        after = registry.get_sample_value("streamfuse_drift_profiles_refused_total")
        if monitor is None:
            assert after == before + 1
        else:  # what gets through works on a batch
            monitor.observe(X, P, np.ones(len(serving.names), dtype=bool), outputs)
        _, n_rows = kept_reference(store, serving.schema.n_features)  # streamfuse fit's reader
        assert n_rows >= 0

    @FUZZ
    @given(mutated(good.meta))
    def fields(meta: dict[str, Any]) -> None:
        watch(meta, good.arrays)

    @FUZZ
    @given(bad_arrays(good.arrays))
    def arrays(bad: dict[str, np.ndarray]) -> None:
        watch(good.meta, bad)

    fields()
    arrays()
    # The cases of the finding, each refused by name.
    for meta in (
        {**good.meta, "features_from": "reference", "n_rows": {"features": "many"}},
        {**good.meta, "scopes": 5},
        {**good.meta, "scopes": [["model", "linear"]]},
        {**good.meta, "heldout_accuracy": []},
        {**good.meta, "heldout_accuracy": {"model:linear": "high"}},
    ):
        watch(meta, good.arrays)
    monitor = open_drift(store, serving, cfg.drift, metrics)
    assert monitor is None  # the last one was refused


# -- fitted strategies -------------------------------------------------------------------------


def test_a_malformed_stored_strategy_is_refused_and_refit(trained_copy: TrainedStore) -> None:
    cfg = load_settings(trained_copy.config)
    store = ModelStore(trained_copy.root)
    model_set = ModelSet(store, cfg.models)
    name = cfg.strategy.name
    good = store.load_strategy(name)
    _, P = _batch(store, Serving(model_set, ()))
    refused: list[str] = []

    def build(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        store.publish_strategy(name, meta, arrays, good.fitted_on)
        built = build_strategies(
            store,
            model_set,
            cfg.strategy,
            (),
            refused=lambda n, why: refused.append(n),
        )
        out = built[0].combiner.combine(P)
        assert out.shape == P.shape[1:]

    @FUZZ
    @given(mutated(good.meta))
    def fields(meta: dict[str, Any]) -> None:
        build(meta, good.arrays)

    @FUZZ
    @given(bad_arrays(good.arrays) if good.arrays else st.just(good.arrays))
    def arrays(bad: dict[str, np.ndarray]) -> None:
        build(good.meta, bad)

    fields()
    arrays()
    n = len(refused)
    build({**good.meta, "params": [1]}, good.arrays)
    assert len(refused) == n + 1


# -- held-out data sets ------------------------------------------------------------------------


def test_a_malformed_heldout_set_is_the_stores_refusal(trained_copy: TrainedStore) -> None:
    cfg = load_settings(trained_copy.config)
    store = ModelStore(trained_copy.root)
    model_set = ModelSet(store, cfg.models)
    good = store.load_dataset("heldout")
    refit = cfg.strategy.model_copy(update={"fit": "heldout"})

    @FUZZ
    @given(bad_arrays(good.arrays))
    def arrays(bad: dict[str, np.ndarray]) -> None:
        store.publish_dataset("heldout", bad)
        try:
            built = build_strategies(store, model_set, refit, ())
        except ConfigError as exc:  # start-up: exit 2, naming the file
            assert "arrays.npz" in str(exc) or "params" in exc.key
        else:
            assert built[0].combiner is not None

    arrays()
    store.publish_dataset("heldout", {**good.arrays, "y": good.arrays["y"] + 100})
    with pytest.raises(ConfigError, match=r"arrays.npz.*class index"):
        build_strategies(store, model_set, refit, ())


# -- decisions ---------------------------------------------------------------------------------


def test_a_malformed_decision_is_refused_by_every_reader(trained_copy: TrainedStore) -> None:
    cfg = settings_for(trained_copy, interval_s=3600)
    store = ModelStore(trained_copy.root)
    model_set = ModelSet(store, cfg.models)
    base = Serving(
        model_set, tuple(build_strategies(store, model_set, cfg.strategy, cfg.shadow_strategies))
    )
    record = {
        "strategy": "soft_vote",
        "previous": "hard_vote",
        "action": "promote",
        "by": "a test",
        "figures": {"test": "mcnemar", "n": 60},
        "held": ["weighted_average"],
    }

    @FUZZ
    @given(mutated(record))
    def fields(fuzzed: dict[str, Any]) -> None:
        current = store.active_decision_version(cfg.decision_name)
        try:
            store.publish_decision(cfg.decision_name, fuzzed, expected=current)
        except PublishError:
            return  # the writer refuses it already
        try:
            store.load_decision(cfg.decision_name)
        except IntegrityError:
            with pytest.raises(ConfigError):
                Promotion(store, cfg, Metrics(CollectorRegistry()), base).start(base)
        else:
            promotion = Promotion(store, cfg, Metrics(CollectorRegistry()), base)
            assert promotion.start(base) is not None
        assert strategy_command(store, cfg.decision_name, "show") in (0, 1)
        assert strategy_command(store, cfg.decision_name, "revert") in (0, 1)

    fields()
    current = store.active_decision_version(cfg.decision_name)
    store.publish_decision(cfg.decision_name, {**record, "held": 5}, expected=current)
    with pytest.raises(IntegrityError, match="'held' is not a list"):
        store.load_decision(cfg.decision_name)
