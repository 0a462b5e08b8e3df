"""Loading verifies every file against the manifest."""

from __future__ import annotations

import json

import pytest
from sklearn.linear_model import LogisticRegression

from model_store import IntegrityError, ModelStore


@pytest.fixture
def lr_store(store: ModelStore, clf_data) -> ModelStore:
    X, y = clf_data
    store.publish("lr", LogisticRegression().fit(X, y))
    return store


def test_altered_file_is_refused_naming_it(lr_store: ModelStore) -> None:
    path = lr_store.root / "lr" / "1" / "model.skops"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.skops") as info:
        lr_store.load("lr")
    assert (info.value.name, info.value.version, info.value.filename) == ("lr", 1, "model.skops")
    assert isinstance(info.value, ValueError)


def test_added_file_is_refused_naming_it(lr_store: ModelStore) -> None:
    (lr_store.root / "lr" / "1" / "extra.py").write_text("print('hi')\n")
    with pytest.raises(IntegrityError, match=r"extra\.py") as info:
        lr_store.load("lr")
    assert info.value.filename == "extra.py"


def test_missing_file_is_refused(lr_store: ModelStore) -> None:
    (lr_store.root / "lr" / "1" / "model.skops").unlink()
    with pytest.raises(IntegrityError, match=r"model\.skops.*missing"):
        lr_store.load("lr")


def test_manifest_for_another_version_is_refused(lr_store: ModelStore) -> None:
    path = lr_store.root / "lr" / "1" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["version"] = 2
    path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match=r"manifest\.json"):
        lr_store.load("lr")


def test_manifest_path_traversal_is_refused(lr_store: ModelStore) -> None:
    path = lr_store.root / "lr" / "1" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["../../secret"] = {"sha256": "0" * 64, "size": 0}
    path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="bad manifest entry"):
        lr_store.load("lr")


def test_tampered_strategy_arrays_are_refused(lr_store: ModelStore, rng) -> None:
    lr_store.publish_strategy("w", {"kind": "weighted"}, {"w": rng.random(3)}, fitted_on={"lr": 1})
    path = lr_store.root / "_strategies" / "w" / "1" / "arrays.npz"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match=r"arrays\.npz"):
        lr_store.load_strategy("w")
