"""Fitted strategies and held-out data sets stored beside the models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from model_store import (
    IntegrityError,
    ModelNotFoundError,
    ModelStore,
    PublishError,
    StoredDataset,
    StoredProfile,
    StoredStrategy,
    build_torch_model,
)
from model_store._arrays_io import dump_arrays, load_arrays

SPEC = {"arch": "mlp", "n_inputs": 2, "hidden": [], "n_outputs": 2, "task": "classification"}


@pytest.fixture
def two_models(store: ModelStore) -> ModelStore:
    for name in ("a", "b"):
        store.publish(name, build_torch_model(SPEC), framework="torch", spec=SPEC)
        store.publish(name, build_torch_model(SPEC), framework="torch", spec=SPEC)
    return store


def test_strategy_round_trip(two_models: ModelStore, rng) -> None:
    meta = {"combiner": "stacking", "params": {"C": 1.0}, "classes": [0, 1]}
    arrays = {"coef_": rng.normal(size=(2, 4)), "classes_": np.array(["no", "yes"])}
    version = two_models.publish_strategy("stack", meta, arrays, fitted_on={"a": 2, "b": 1})
    assert version == 1
    assert two_models.strategy_versions("stack") == [1]
    assert two_models.strategies() == ["stack"]

    loaded = two_models.load_strategy("stack")
    assert isinstance(loaded, StoredStrategy)
    assert (loaded.name, loaded.version, loaded.meta) == ("stack", 1, meta)
    assert loaded.fitted_on == {"a": 2, "b": 1}
    assert set(loaded.arrays) == {"coef_", "classes_"}
    np.testing.assert_array_equal(loaded.arrays["coef_"], arrays["coef_"])
    np.testing.assert_array_equal(loaded.arrays["classes_"], arrays["classes_"])
    assert loaded.manifest["fitted_on"] == {"a": 2, "b": 1}
    assert (two_models.root / "_strategies" / "stack" / "1" / "meta.json").is_file()


def test_strategy_promotion(two_models: ModelStore) -> None:
    two_models.publish_strategy("w", {"v": 1}, {}, fitted_on={"a": 1})
    two_models.publish_strategy("w", {"v": 2}, {}, fitted_on={"a": 2}, promote=False)
    assert two_models.active_strategy_version("w") == 1
    assert two_models.load_strategy("w").meta == {"v": 1}
    assert two_models.load_strategy("w", 2).fitted_on == {"a": 2}
    two_models.promote_strategy("w", 2)
    assert two_models.load_strategy("w").version == 2
    assert two_models.rollback_strategy("w") == 1


def test_strategy_must_be_fitted_on_stored_models(two_models: ModelStore) -> None:
    with pytest.raises(ModelNotFoundError, match="'a' version 9"):
        two_models.publish_strategy("w", {}, {}, fitted_on={"a": 9})
    with pytest.raises(ModelNotFoundError, match="'ghost'"):
        two_models.publish_strategy("w", {}, {}, fitted_on={"ghost": 1})
    assert two_models.strategy_versions("w") == []


def test_strategy_rejects_unserialisable_state(two_models: ModelStore) -> None:
    with pytest.raises(PublishError, match="JSON"):
        two_models.publish_strategy("w", {"f": object()}, {}, fitted_on={"a": 1})
    with pytest.raises(PublishError, match="object"):
        two_models.publish_strategy("w", {}, {"x": np.array([{}], dtype=object)}, {"a": 1})
    with pytest.raises(PublishError, match="array name"):
        two_models.publish_strategy("w", {}, {"../x": np.zeros(1)}, fitted_on={"a": 1})
    with pytest.raises(ModelNotFoundError, match="strategy 'w'"):
        two_models.load_strategy("w")


def test_profile_round_trip_versions_and_checksums(two_models: ModelStore, rng) -> None:
    meta = {"n_bins": 4, "scopes": [["model", "a"]]}
    arrays = {"feature_edges": rng.normal(size=(3, 3)), "names": np.array(["x", "y", "z"])}
    assert two_models.publish_profile("reference", meta, arrays, fitted_on={"a": 2}) == 1
    assert two_models.publish_profile("reference", meta, arrays, fitted_on={"a": 1}) == 2
    assert two_models.profiles() == ["reference"]
    assert two_models.profile_versions("reference") == [1, 2]
    assert two_models.active_profile_version("reference") == 2
    loaded = two_models.load_profile("reference", 1)
    assert isinstance(loaded, StoredProfile)
    assert (loaded.version, loaded.meta, loaded.fitted_on) == (1, meta, {"a": 2})
    np.testing.assert_array_equal(loaded.arrays["feature_edges"], arrays["feature_edges"])
    assert two_models.strategies() == []  # a profile is not a strategy
    path = two_models.root / "_profiles" / "reference" / "2" / "arrays.npz"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match=r"profile 'reference' version 2.*arrays\.npz"):
        two_models.load_profile("reference")
    with pytest.raises(ModelNotFoundError, match="'a' version 9"):
        two_models.publish_profile("reference", meta, arrays, fitted_on={"a": 9})


def test_dataset_round_trip(store: ModelStore, rng) -> None:
    X = rng.normal(size=(10, 3))
    y = np.array(["x", "y"] * 5)
    assert store.publish_dataset("holdout", {"X": X, "y": y}) == 1
    assert store.publish_dataset("holdout", {"X": X[:4], "y": y[:4]}) == 2
    assert store.dataset_versions("holdout") == [1, 2]
    assert store.datasets() == ["holdout"]

    latest = store.load_dataset("holdout")
    assert isinstance(latest, StoredDataset)
    assert latest.version == 2 and latest.arrays["X"].shape == (4, 3)
    first = store.load_dataset("holdout", 1)
    np.testing.assert_array_equal(first.arrays["X"], X)
    np.testing.assert_array_equal(first.arrays["y"], y)
    assert first.manifest["shapes"] == {"X": [10, 3], "y": [10]}
    with pytest.raises(ModelNotFoundError, match="dataset 'nope'"):
        store.load_dataset("nope")


@settings(max_examples=30, deadline=None)
@given(
    arrays=st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
        hnp.arrays(
            dtype=st.one_of(
                hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.unicode_string_dtypes()
            ),
            shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
        ),
        max_size=4,
    )
)
def test_arrays_round_trip_exactly(arrays: dict[str, np.ndarray]) -> None:
    loaded = load_arrays(
        dump_arrays(arrays, name="p"), name="p", version=1, filename="a.npz", kind="dataset"
    )
    assert set(loaded) == set(arrays)
    for key, array in arrays.items():
        assert loaded[key].dtype == array.dtype
        np.testing.assert_array_equal(loaded[key], array)
