"""Signed manifests and pointers (issue 18, finding 3).

Rewriting a file together with its sha256 used to swap in any model. With a key kept
outside the store, every manifest and pointer the store writes carries an HMAC-SHA256, and
every one it reads is checked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from model_store import (
    ModelStore,
    ModelStoreError,
    SignatureError,
    SigningKeyError,
    generate_key,
    read_key,
)
from tests.model_store.hostile import edit_manifest, swap, version_dir


@pytest.fixture
def key(tmp_path: Path) -> bytes:
    return read_key(generate_key(tmp_path / "store.key"))


@pytest.fixture
def signed(tmp_store: Path, key: bytes, clf_data) -> ModelStore:
    X, y = clf_data
    store = ModelStore(tmp_store, key=key, require_signature=True)
    store.publish("lr", LogisticRegression().fit(X, y))
    store.publish("lr", LogisticRegression(C=0.01).fit(X, y))
    store.publish_strategy("vote", {"name": "soft_vote"}, {}, fitted_on={"lr": 2})
    store.publish_dataset("heldout", {"X": X})
    return store


def test_generate_key_is_private_and_never_overwrites(tmp_path: Path) -> None:
    path = generate_key(tmp_path / "k")
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(read_key(path)) == 32
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_key(path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_key(tmp_path / "dangling")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("content", ["", "zz" * 32, "ab" * 8])
def test_read_key_refuses_malformed_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(SigningKeyError, match="hex digits"):
        read_key(path)


def test_read_key_refuses_missing_open_or_special_files(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="cannot be read"):
        read_key(tmp_path / "missing")
    path = generate_key(tmp_path / "k")
    path.chmod(0o666)
    with pytest.raises(SigningKeyError, match="writable by group or others"):
        read_key(path)
    with pytest.raises(SigningKeyError, match="not a regular file"):
        read_key(tmp_path)


def test_signed_store_round_trips(signed: ModelStore) -> None:
    assert signed.signing == "signed" and signed.require_signature
    model = signed.load("lr")
    assert model.signed and model.version == 2
    assert signed.load_strategy("vote").signed and signed.load_dataset("heldout").signed
    assert signed.manifest("lr")["signed"] is True
    assert signed.rollback("lr") == 1
    assert signed.active_version("lr") == 1


def test_swapped_file_with_fixed_sha256_is_refused(signed: ModelStore, clf_data) -> None:
    import skops.io as sio

    X, y = clf_data
    swap(signed.root, "lr", "model.skops", sio.dumps(DummyClassifier().fit(X, y)))
    with pytest.raises(SignatureError, match=r"'manifest\.json': has a bad signature"):
        signed.load("lr", 1)
    unsigned_reader = ModelStore(signed.root)  # no key: nothing to check with
    assert unsigned_reader.signing == "unsigned"
    assert type(unsigned_reader.load("lr", 1).estimator).__name__ == "DummyClassifier"


@pytest.mark.parametrize("kind_dir", ["_strategies", "_datasets"])
def test_strategy_and_dataset_manifests_are_signed(signed: ModelStore, kind_dir: str) -> None:
    name = "vote" if kind_dir == "_strategies" else "heldout"
    edit_manifest(signed.root, name, lambda m: m.update(created="tomorrow"), kind_dir)
    with pytest.raises(SignatureError):
        if kind_dir == "_strategies":
            signed.load_strategy(name)
        else:
            signed.load_dataset(name)


def test_another_keys_signature_is_named(signed: ModelStore, tmp_path: Path) -> None:
    other = ModelStore(signed.root, key=read_key(generate_key(tmp_path / "other")))
    with pytest.raises(SignatureError, match="signed with another key"):
        other.load("lr")


def test_unsigned_versions_refused_when_required_and_warned_otherwise(
    tmp_store: Path, key: bytes, clf_data, caplog: pytest.LogCaptureFixture
) -> None:
    X, y = clf_data
    ModelStore(tmp_store).publish("lr", LogisticRegression().fit(X, y))
    with pytest.raises(SignatureError, match="not signed"):
        ModelStore(tmp_store, key=key, require_signature=True).load("lr")
    with caplog.at_level(logging.WARNING, logger="model_store"):
        model = ModelStore(tmp_store, key=key).load("lr")
    assert not model.signed
    assert "not signed" in caplog.text
    with pytest.raises(SigningKeyError, match="needs a key"):
        ModelStore(tmp_store, require_signature=True)


def test_pointer_cannot_be_forged_or_copied(signed: ModelStore, clf_data) -> None:
    pointer = signed.root / "lr" / "active.json"
    doc = json.loads(pointer.read_text())
    pointer.write_text(json.dumps({**doc, "version": 1}))  # point at another version
    with pytest.raises(SignatureError, match=r"active\.json"):
        signed.active_version("lr")
    pointer.write_text(json.dumps({"version": 1}))  # an unsigned pointer
    with pytest.raises(SignatureError, match="not signed"):
        signed.load("lr")
    X, y = clf_data
    signed.publish("rf", LogisticRegression().fit(X, y))
    shutil.copy(signed.root / "rf" / "active.json", pointer)  # signed, but for another model
    with pytest.raises(ModelStoreError, match="'rf'"):
        signed.active_version("lr")


def test_manifest_cannot_move_to_another_name_or_kind(signed: ModelStore) -> None:
    target = signed.root / "_strategies" / "lr" / "1"
    target.parent.mkdir(parents=True)
    shutil.copytree(version_dir(signed.root, "lr"), target)
    with pytest.raises(ModelStoreError, match="model"):
        signed.load_strategy("lr", 1)


def test_publishing_with_a_key_repairs_an_unsigned_pointer(
    tmp_store: Path, key: bytes, clf_data
) -> None:
    X, y = clf_data
    ModelStore(tmp_store).publish("lr", LogisticRegression().fit(X, y))
    store = ModelStore(tmp_store, key=key)
    store.publish("lr", LogisticRegression().fit(X, y))
    required = ModelStore(tmp_store, key=key, require_signature=True)
    assert required.active_version("lr") == 2
    assert os.stat(tmp_store / "lr" / "active.json").st_size < 4096
