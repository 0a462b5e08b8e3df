"""The hostile store, paths: no link below the root is followed, for reading or writing.

Finding 4 (symlinks and special files are followed; sizes unchecked) and finding 5 (writes
outside the store through a planted ``.lock`` or model folder) of issue 18. FIFOs and
``/dev/zero`` run in a child process (``test_ms_hostile.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from model_store import IntegrityError, ModelStore, ModelStoreError
from tests.model_store.hostile import edit_manifest, version_dir


@pytest.fixture
def lr_store(store: ModelStore, clf_data) -> ModelStore:
    X, y = clf_data
    store.publish("lr", LogisticRegression().fit(X, y))
    store.publish("lr", LogisticRegression(C=0.1).fit(X, y), promote=False)
    return store


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


def test_symlinked_model_file_is_refused(lr_store: ModelStore, outside: Path) -> None:
    model_file = version_dir(lr_store.root, "lr") / "model.skops"
    target = outside / "model.skops"
    shutil.move(model_file, target)  # same bytes, same sha256: only the link is wrong
    model_file.symlink_to(target)
    with pytest.raises(IntegrityError, match=r"'model\.skops': is a symlink"):
        lr_store.load("lr")


@pytest.mark.parametrize("what", ["version folder", "model folder"])
def test_symlinked_folders_are_refused(lr_store: ModelStore, outside: Path, what: str) -> None:
    folder = version_dir(lr_store.root, "lr") if what == "version folder" else lr_store.root / "lr"
    shutil.move(folder, outside / folder.name)
    folder.symlink_to(outside / folder.name)
    with pytest.raises(ModelStoreError, match="symlink"):
        lr_store.load("lr", 1)


def test_symlinked_pointer_is_refused(lr_store: ModelStore, outside: Path) -> None:
    pointer = lr_store.root / "lr" / "active.json"
    (outside / "active.json").write_text(json.dumps({"version": 2}))
    pointer.unlink()
    pointer.symlink_to(outside / "active.json")
    with pytest.raises(ModelStoreError, match=r"active\.json.*symlink"):
        lr_store.active_version("lr")


def test_symlinked_model_folders_are_not_listed(lr_store: ModelStore, outside: Path) -> None:
    shutil.copytree(lr_store.root / "lr", outside / "lr")
    (lr_store.root / "other").symlink_to(outside / "lr")
    assert lr_store.models() == ["lr"]


def test_size_is_checked_against_the_manifest_before_reading(lr_store: ModelStore) -> None:
    edit_manifest(lr_store.root, "lr", lambda m: m["files"]["model.skops"].update(size=7))
    with pytest.raises(IntegrityError, match=r"'model\.skops': is \d+ bytes, the manifest says 7"):
        lr_store.load("lr")


def test_size_caps_apply_before_reading(lr_store: ModelStore) -> None:
    from model_store import StoreLimits

    small = ModelStore(lr_store.root, limits=StoreLimits(max_file_bytes=100))
    with pytest.raises(IntegrityError, match=r"'model\.skops'.*over the cap of 100"):
        small.load("lr")
    tiny_json = ModelStore(lr_store.root, limits=StoreLimits(max_json_bytes=50))
    with pytest.raises(ModelStoreError, match="over the cap of 50"):
        tiny_json.load("lr")
    with pytest.raises(ValueError, match="positive integer"):
        StoreLimits(max_file_bytes=0)


def test_lock_symlink_is_not_written_through(lr_store: ModelStore, outside: Path, clf_data) -> None:
    lock = lr_store.root / "lr" / ".lock"
    lock.unlink()
    lock.symlink_to(outside / "created-by-the-store")
    X, y = clf_data
    with pytest.raises(ModelStoreError, match=r"\.lock is a symlink"):
        lr_store.publish("lr", LogisticRegression().fit(X, y))
    with pytest.raises(ModelStoreError, match=r"\.lock is a symlink"):
        lr_store.promote("lr", 2)
    assert not (outside / "created-by-the-store").exists()
    assert lr_store.active_version("lr") == 1


def test_publish_refuses_a_symlinked_model_folder(
    store: ModelStore, outside: Path, clf_data
) -> None:
    store.root.mkdir(exist_ok=True)
    (store.root / "lr").symlink_to(outside)
    X, y = clf_data
    with pytest.raises(ModelStoreError, match="symlink"):
        store.publish("lr", LogisticRegression().fit(X, y))
    assert list(outside.iterdir()) == []


def test_promote_replaces_a_symlinked_pointer_without_following_it(
    lr_store: ModelStore, outside: Path
) -> None:
    pointer = lr_store.root / "lr" / "active.json"
    target = outside / "precious.json"
    target.write_text("{}")
    pointer.unlink()
    pointer.symlink_to(target)
    lr_store.promote("lr", 2)  # the broken pointer is replaced (its history is not trusted)
    assert target.read_text() == "{}"
    assert not pointer.is_symlink()
    assert lr_store.active_version("lr") == 2


def test_stale_temp_symlinks_are_unlinked_not_followed(
    lr_store: ModelStore, outside: Path, clf_data
) -> None:
    (outside / "keep").write_text("x")
    (lr_store.root / "lr" / ".tmp-evil").symlink_to(outside)
    X, y = clf_data
    lr_store.publish("lr", LogisticRegression().fit(X, y))
    assert (outside / "keep").read_text() == "x"
    assert not (lr_store.root / "lr" / ".tmp-evil").exists()
