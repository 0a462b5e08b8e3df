"""Integer versions, the promotion pointer, rollback and listing."""

from __future__ import annotations

import json

import pytest
from sklearn.linear_model import Ridge

from model_store import (
    InvalidNameError,
    ModelNotFoundError,
    ModelStore,
    RollbackError,
)


@pytest.fixture
def ridge(reg_data) -> Ridge:
    X, y = reg_data
    return Ridge().fit(X, y)


def test_versions_count_up_and_latest_publish_is_active(store: ModelStore, ridge) -> None:
    assert [store.publish("m", ridge) for _ in range(3)] == [1, 2, 3]
    assert store.versions("m") == [1, 2, 3]
    assert store.active_version("m") == 3
    assert store.load("m").version == 3
    assert store.models() == ["m"]


def test_publish_without_promote_keeps_active(store: ModelStore, ridge) -> None:
    store.publish("m", ridge)
    assert store.publish("m", ridge, promote=False) == 2
    assert store.active_version("m") == 1
    assert store.load("m").version == 1
    assert store.load("m", 2).version == 2


def test_nothing_promoted(store: ModelStore, ridge) -> None:
    store.publish("m", ridge, promote=False)
    with pytest.raises(ModelNotFoundError, match="no promoted version"):
        store.active_version("m")
    with pytest.raises(ModelNotFoundError):
        store.load("m")


def test_promote_and_rollback(store: ModelStore, ridge) -> None:
    for _ in range(3):
        store.publish("m", ridge, promote=False)
    store.promote("m", 1)
    store.promote("m", 3)
    store.promote("m", 2)
    assert store.active_version("m") == 2
    assert store.rollback("m") == 3
    assert store.active_version("m") == 3
    assert store.rollback("m") == 1
    assert store.load("m").version == 1
    with pytest.raises(RollbackError, match="'m'"):
        store.rollback("m")
    actions = [(h["action"], h["version"]) for h in store.promotion_history("m")]
    assert actions == [
        ("promote", 1),
        ("promote", 3),
        ("promote", 2),
        ("rollback", 3),
        ("rollback", 1),
    ]


def test_promoting_the_active_version_again_does_not_stack(store: ModelStore, ridge) -> None:
    store.publish("m", ridge)
    store.publish("m", ridge)
    store.promote("m", 2)
    assert store.rollback("m") == 1


def test_rollback_without_history(store: ModelStore, ridge) -> None:
    store.publish("m", ridge)
    with pytest.raises(RollbackError) as info:
        store.rollback("m")
    assert isinstance(info.value, LookupError)
    with pytest.raises(ModelNotFoundError):
        store.rollback("ghost")


def test_pointer_file_is_small_json(store: ModelStore, ridge) -> None:
    store.publish("m", ridge)
    pointer = store.root / "m" / "active.json"
    assert json.loads(pointer.read_text())["version"] == 1
    inode = pointer.stat().st_ino
    store.publish("m", ridge)
    # Replaced, not rewritten in place: a reader never sees a half-written pointer.
    assert pointer.stat().st_ino != inode
    assert not [p for p in pointer.parent.iterdir() if p.name.startswith(".tmp-")]


def test_unknown_models_and_versions(store: ModelStore, ridge) -> None:
    assert store.models() == []
    assert store.versions("ghost") == []
    with pytest.raises(ModelNotFoundError, match="'ghost' not found"):
        store.load("ghost")
    store.publish("m", ridge)
    with pytest.raises(
        ModelNotFoundError, match=r"version 7 not found \(available versions: \[1\]\)"
    ):
        store.load("m", 7)
    with pytest.raises(ModelNotFoundError):
        store.promote("m", 7)
    with pytest.raises(ModelNotFoundError):
        store.manifest("m", 7)


@pytest.mark.parametrize("name", ["", "../x", "a/b", "_strategies", ".hidden", "a..b"])
def test_invalid_names(store: ModelStore, ridge, name: str) -> None:
    with pytest.raises(InvalidNameError):
        store.publish(name, ridge)


def test_models_lists_only_models(store: ModelStore, ridge, rng) -> None:
    store.publish("b", ridge)
    store.publish("a", ridge)
    store.publish_dataset("holdout", {"X": rng.normal(size=(3, 2))})
    store.publish_strategy("vote", {}, {}, fitted_on={"a": 1})
    assert store.models() == ["a", "b"]
