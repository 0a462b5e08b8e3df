"""The served model set (agreement, lookup, promotions) and building the strategies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import combiners
from model_store import ModelStore
from worker.config import ModelRef, StrategyRef
from worker.errors import ConfigError
from worker.inference.models import ModelSet, Promotion
from worker.inference.strategies import HELDOUT_DATASET, build_strategies

pytestmark = pytest.mark.slow  # its cases fit strategies on held-out data, in trial children


def refs(*names: str) -> list[ModelRef]:
    return [ModelRef(name=n) for n in names]


@pytest.fixture
def store(tmp_store: Any) -> ModelStore:
    return ModelStore(tmp_store)


# -- ModelSet ---------------------------------------------------------------------------------


def test_models_with_different_feature_counts_are_refused(
    store: ModelStore, publish_tiny: Callable[..., int]
) -> None:
    publish_tiny(store, "three", n_features=3)
    publish_tiny(store, "four", n_features=4)
    with pytest.raises(ConfigError) as info:
        ModelSet(store, refs("three", "four"))
    assert info.value.key == "models"
    assert "'four'" in str(info.value) and "'three'" in str(info.value)
    assert "4 features" in str(info.value)


def test_models_with_different_classes_are_refused(
    store: ModelStore, publish_tiny: Callable[..., int], rng: np.random.Generator
) -> None:
    publish_tiny(store, "binary")
    X = rng.normal(size=(60, 3))
    store.publish("ternary", LogisticRegression().fit(X, np.arange(60) % 3))
    with pytest.raises(ConfigError) as info:
        ModelSet(store, refs("binary", "ternary"))
    assert info.value.key == "models"
    assert "outputs" in str(info.value) or "classes" in str(info.value)


def test_models_with_different_tasks_are_refused(
    store: ModelStore, publish_tiny: Callable[..., int], rng: np.random.Generator
) -> None:
    publish_tiny(store, "clf")
    X = rng.normal(size=(30, 3))
    store.publish("reg", LinearRegression().fit(X, X[:, 0]))
    with pytest.raises(ConfigError) as info:
        ModelSet(store, refs("clf", "reg"))
    assert info.value.key == "models"
    assert "task" in str(info.value)


def test_unknown_model_lists_the_known_ones(
    store: ModelStore, publish_tiny: Callable[..., int]
) -> None:
    publish_tiny(store, "alpha")
    publish_tiny(store, "beta")
    with pytest.raises(ConfigError) as info:
        ModelSet(store, refs("alpha", "gamma"))
    assert info.value.key == "models.1.name"
    message = str(info.value)
    assert "'gamma'" in message and "alpha" in message and "beta" in message
    assert "did you mean" not in message


def test_a_misspelt_model_is_found_before_any_model_loads(
    store: ModelStore, publish_tiny: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish_tiny(store, "xgboost")
    publish_tiny(store, "lightgbm")
    loaded: list[str] = []
    load = store.load
    monkeypatch.setattr(
        store, "load", lambda name, *a, **k: loaded.append(name) or load(name, *a, **k)
    )
    with pytest.raises(ConfigError) as info:
        ModelSet(store, refs("xgboost", "lightgmb"))
    assert info.value.key == "models.1.name"
    assert "no model named 'lightgmb'" in str(info.value)
    assert "did you mean 'lightgbm'?" in str(info.value)
    with pytest.raises(ConfigError) as info:
        ModelSet(store, [ModelRef(name="xgboost"), ModelRef(name="lightgbm", version=4)])
    assert info.value.key == "models.1.version"
    assert str(info.value).endswith("'lightgbm' has no version 4 in the store (stored: 1)")
    assert loaded == []  # both found from the store's listing alone


def test_missing_version_is_a_config_error(
    store: ModelStore, publish_tiny: Callable[..., int]
) -> None:
    publish_tiny(store, "alpha")
    with pytest.raises(ConfigError) as info:
        ModelSet(store, [ModelRef(name="alpha", version=9)])
    assert info.value.key == "models.0.version"
    assert "'alpha'" in str(info.value)


def test_schema_layout_and_versions_come_from_the_store(
    store: ModelStore, publish_tiny: Callable[..., int], rng: np.random.Generator
) -> None:
    publish_tiny(store, "a", n_features=5)
    publish_tiny(store, "b", n_features=5, seed=1)
    publish_tiny(store, "b", n_features=5, seed=2)
    model_set = ModelSet(store, [ModelRef(name="a"), ModelRef(name="b", version=1)])
    assert model_set.names == ["a", "b"]
    assert model_set.versions == {"a": 1, "b": 1}
    assert model_set.schema.n_features == 5 and model_set.schema.feature_names is None
    assert model_set.layout.task == "classification"
    assert model_set.layout.blocks[0].classes == (0, 1)
    X = rng.normal(size=(4, 5))
    for fn, name in zip(model_set.predict_fns, ["a", "b"], strict=True):
        np.testing.assert_array_equal(fn(X), store.load(name, 1).predict_outputs(X))


def test_promotion_is_found_checked_and_swapped(
    store: ModelStore, publish_tiny: Callable[..., int], rng: np.random.Generator
) -> None:
    publish_tiny(store, "a")
    publish_tiny(store, "pinned")
    model_set = ModelSet(store, [ModelRef(name="a"), ModelRef(name="pinned", version=1)])
    assert model_set.pending_promotions() == []
    publish_tiny(store, "a", seed=5)  # v2, promoted
    publish_tiny(store, "pinned", seed=5)  # pinned in config: not followed
    promotions = model_set.pending_promotions()
    assert promotions == [Promotion("a", 1, 2)]
    probe = rng.normal(size=(8, 3))
    candidate = model_set.load_candidate(promotions[0], probe)
    assert model_set.versions == {"a": 1, "pinned": 1}  # not served until swapped
    swapped = model_set.replaced(candidate)
    assert model_set.versions == {"a": 1, "pinned": 1}  # the served set is left as it was
    assert swapped.versions == {"a": 2, "pinned": 1}
    assert swapped.pending_promotions() == []
    assert model_set.pending_promotions() == [Promotion("a", 1, 2)]
    np.testing.assert_array_equal(
        swapped.predict_fns[0](probe), store.load("a", 2).predict_outputs(probe)
    )


def test_promoted_version_that_disagrees_is_refused(
    store: ModelStore, publish_tiny: Callable[..., int], rng: np.random.Generator
) -> None:
    publish_tiny(store, "a", n_features=3)
    model_set = ModelSet(store, refs("a"))
    publish_tiny(store, "a", n_features=4)
    (promotion,) = model_set.pending_promotions()
    with pytest.raises(ValueError, match="features"):
        model_set.load_candidate(promotion, rng.normal(size=(2, 3)))
    assert model_set.versions == {"a": 1}


# -- strategies on the trained store ----------------------------------------------------------


def served(root: Any, names: list[str]) -> tuple[ModelStore, ModelSet]:
    store = ModelStore(root)
    return store, ModelSet(store, refs(*names))


def outputs(store: ModelStore, names: list[str], split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(P, y)`` on a stored split, from freshly loaded promoted models."""
    data = store.load_dataset(split).arrays
    X = np.asarray(data["X"], dtype=np.float64)
    return np.stack([store.load(n).predict_outputs(X) for n in names]), np.asarray(data["y"])


@dataclass
class Base:
    """The trained store as served, with the models' outputs on its splits (read-only)."""

    store: ModelStore
    model_set: ModelSet
    names: list[str]
    P: dict[str, tuple[np.ndarray, np.ndarray]]


@pytest.fixture(scope="module")
def base(trained: Any) -> Base:
    store, model_set = served(trained.root, trained.model_names)
    P = {split: outputs(store, trained.model_names, split) for split in (HELDOUT_DATASET, "test")}
    return Base(store, model_set, trained.model_names, P)


def test_stored_strategies_are_used_when_fitted_on_the_served_versions(base: Base) -> None:
    store, model_set = base.store, base.model_set
    shadows = [StrategyRef(name=s) for s in ("weighted_sum", "stacking")]
    built = build_strategies(store, model_set, StrategyRef(name="soft_vote"), shadows)
    assert [s.name for s in built] == ["soft_vote", "weighted_sum", "stacking"]
    assert [s.source for s in built] == ["store v1"] * 3
    assert [s.key for s in built] == ["strategy", "shadow_strategies.0", "shadow_strategies.1"]
    P, _ = base.P["test"]
    for strategy in built:
        stored = store.load_strategy(strategy.name)
        assert stored.fitted_on == model_set.versions
        expected = combiners.load_state(stored.meta, stored.arrays).combine(P)
        np.testing.assert_array_equal(strategy.combiner.combine(P), expected)


def test_heldout_refits_on_the_stored_heldout_set(base: Base) -> None:
    ref = StrategyRef(name="weighted_sum", fit="heldout")
    (strategy,) = build_strategies(base.store, base.model_set, ref, [])
    assert strategy.source == "heldout"
    P_ho, y_ho = base.P[HELDOUT_DATASET]
    P_te, _ = base.P["test"]
    expected = combiners.get_combiner("weighted_sum").fit(P_ho, y_ho).combine(P_te)
    np.testing.assert_allclose(strategy.combiner.combine(P_te), expected, rtol=1e-10)


def test_config_params_that_differ_from_the_stored_fit_refit(base: Base) -> None:
    weights = [1.0, 1.0, 1.0, 3.0]
    ref = StrategyRef(name="soft_vote", params={"weights": weights})
    (strategy,) = build_strategies(base.store, base.model_set, ref, [])
    assert strategy.source == "heldout"
    P, _ = base.P["test"]
    expected = np.tensordot(np.asarray(weights) / sum(weights), P, axes=1)
    np.testing.assert_allclose(strategy.combiner.combine(P), expected, rtol=1e-12)


def publish_new_linear(store: ModelStore) -> int:
    data = store.load_dataset(HELDOUT_DATASET).arrays
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=500))
    return store.publish("linear", model.fit(data["X"], data["y"]))


def test_promoting_a_new_version_makes_auto_refit(trained_copy: Any) -> None:
    store = ModelStore(trained_copy.root)
    assert publish_new_linear(store) == 2
    model_set = ModelSet(store, refs(*trained_copy.model_names))
    assert model_set.versions["linear"] == 2
    shadows = [StrategyRef(name="soft_vote")]
    built = build_strategies(store, model_set, StrategyRef(name="weighted_sum"), shadows)
    assert [s.source for s in built] == ["heldout", "heldout"]
    P_ho, y_ho = outputs(store, trained_copy.model_names, HELDOUT_DATASET)
    P_te, _ = outputs(store, trained_copy.model_names, "test")
    expected = combiners.get_combiner("weighted_sum").fit(P_ho, y_ho).combine(P_te)
    np.testing.assert_allclose(built[0].combiner.combine(P_te), expected, rtol=1e-10)
    stale = store.load_strategy("weighted_sum")
    stale_out = combiners.load_state(stale.meta, stale.arrays).combine(P_te)
    assert not np.allclose(built[0].combiner.combine(P_te), stale_out)


def test_promoting_back_uses_the_stored_fit_again(trained_copy: Any) -> None:
    store = ModelStore(trained_copy.root)
    publish_new_linear(store)
    store.rollback("linear")
    model_set = ModelSet(store, refs(*trained_copy.model_names))
    (strategy,) = build_strategies(store, model_set, StrategyRef(name="weighted_sum"), [])
    assert strategy.source == "store v1"


@pytest.mark.parametrize(
    ("active", "shadows", "key"),
    [
        (StrategyRef(name="soft_vote", fit="store"), [], "strategy.fit"),
        (
            StrategyRef(name="soft_vote"),
            [StrategyRef(name="hard_vote", fit="store")],
            "shadow_strategies.0.fit",
        ),
    ],
)
def test_fit_store_refuses_a_strategy_fitted_on_other_versions(
    trained_copy: Any, active: StrategyRef, shadows: list[StrategyRef], key: str
) -> None:
    store = ModelStore(trained_copy.root)
    publish_new_linear(store)
    model_set = ModelSet(store, refs(*trained_copy.model_names))
    with pytest.raises(ConfigError) as info:
        build_strategies(store, model_set, active, shadows)
    assert info.value.key == key
    assert "'linear': 2" in str(info.value)


@pytest.mark.parametrize(
    ("active", "shadows", "key"),
    [
        ("soft_vot", [], "strategy.name"),
        ("soft_vote", ["hard_vote", "no_such_strategy"], "shadow_strategies.1.name"),
    ],
)
def test_unknown_strategy_lists_the_known_ones(
    base: Base, active: str, shadows: list[str], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_strategies(
            base.store,
            base.model_set,
            StrategyRef(name=active),
            [StrategyRef(name=s) for s in shadows],
        )
    assert info.value.key == key
    for name in combiners.available_combiners():
        assert name in str(info.value)


def test_bad_strategy_params_name_the_params_key(base: Base) -> None:
    ref = StrategyRef(name="soft_vote", params={"weights": [1, 2]}, fit="heldout")
    with pytest.raises(ConfigError) as info:
        build_strategies(base.store, base.model_set, ref, [])
    assert info.value.key == "strategy.params"


def test_no_stored_fit_and_no_heldout_set_is_a_config_error(
    store: ModelStore, publish_tiny: Callable[..., int]
) -> None:
    publish_tiny(store, "a")
    publish_tiny(store, "b", seed=1)
    model_set = ModelSet(store, refs("a", "b"))
    with pytest.raises(ConfigError) as info:
        build_strategies(store, model_set, StrategyRef(name="soft_vote"), [])
    assert info.value.key == "strategy"
    assert "held-out" in str(info.value)


# -- multi-task model sets --------------------------------------------------------------------

MT_TASKS = [
    {"name": "value", "type": "regression", "n_outputs": 1, "classes": None},
    {"name": "kind", "type": "classification", "n_outputs": 2, "classes": [0, 1]},
]


@pytest.fixture
def multitask_store(store: ModelStore, rng: np.random.Generator) -> ModelStore:
    """Two tiny multi-task nets and the held-out sets laid out as ``streamfuse train`` does:
    ``heldout`` for the single-task base models, ``heldout_multitask`` with one column per task."""
    import torch

    from model_store import build_torch_model

    torch.manual_seed(0)
    spec_tasks = [{k: v for k, v in t.items() if k != "classes"} for t in MT_TASKS]
    for name, trunk in [("mt_a", [8]), ("mt_b", [6, 6])]:
        spec = {"arch": "multitask_mlp", "n_inputs": 4, "trunk": trunk, "tasks": spec_tasks}
        store.publish(
            name,
            build_torch_model(spec),
            framework="torch",
            input_schema={"n_features": 4, "feature_names": None},
            task="multitask",
            tasks=MT_TASKS,
            output_kind="mixed",
            spec=spec,
        )
    X = rng.normal(size=(40, 4))
    value, kind = X[:, 0] + 0.1 * rng.normal(size=40), (X[:, 1] > 0).astype(np.int64)
    store.publish_dataset(HELDOUT_DATASET, {"X": X, "y": value})
    store.publish_dataset(
        HELDOUT_DATASET + "_multitask", {"X": X, "y": np.column_stack([value, kind])}
    )
    return store


def test_multitask_model_set_layout(multitask_store: ModelStore) -> None:
    model_set = ModelSet(multitask_store, refs("mt_a", "mt_b"))
    layout = model_set.layout
    assert layout.is_multitask and layout.n_outputs == 3
    assert [(b.name, b.kind, b.start, b.stop) for b in layout.blocks] == [
        ("value", "regression", 0, 1),
        ("kind", "classification", 1, 3),
    ]


def test_multitask_strategy_refits_on_the_multitask_heldout_set(
    multitask_store: ModelStore,
) -> None:
    model_set = ModelSet(multitask_store, refs("mt_a", "mt_b"))
    params = {"tasks": [{k: v for k, v in t.items() if k != "classes"} for t in MT_TASKS]}
    ref = StrategyRef(name="multitask", params={**params, "epochs": 5}, fit="heldout")
    (strategy,) = build_strategies(multitask_store, model_set, ref, [])
    assert strategy.source == "heldout"


def test_a_strategy_that_does_not_import_is_found_before_any_model_loads(
    store: ModelStore, publish_tiny: Callable[..., int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.config import settings_from_dict
    from worker.inference.serving import build_serving

    publish_tiny(store, "alpha")
    loaded: list[str] = []
    load = store.load
    monkeypatch.setattr(
        store, "load", lambda name, *a, **k: loaded.append(name) or load(name, *a, **k)
    )
    config = {
        "store": str(store.root),
        "models": [{"name": "alpha"}],
        "strategy": {"name": "soft_vote"},
        "shadow_strategies": [{"name": "no_such_package.fusion:Mine"}],
    }
    with pytest.raises(ConfigError) as info:
        build_serving(store, settings_from_dict(config, environ={}))
    assert info.value.key == "shadow_strategies.0.name"
    assert "no_such_package.fusion:Mine" in str(info.value)
    assert loaded == []
