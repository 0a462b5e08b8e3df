"""Rollback is explicit (issue 23, finding 7): an older, validly signed pointer put back is a
replay, refused by a reader that has read a newer one; ``store rollback`` writes a new pointer
with a higher sequence; ``store sign`` signs a store published before its key existed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from model_store import (
    IntegrityError,
    ModelStore,
    SignatureError,
    SigningKeyError,
    StoreLayoutError,
    generate_key,
    read_key,
)
from model_store._signing import POINTER_PURPOSE, Signer
from worker.cli import main


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return generate_key(tmp_path / "store.key")


def _publish_two(store: ModelStore, clf_data: tuple[np.ndarray, np.ndarray]) -> bytes:
    """Publish lr v1 and v2; returns v1's signed pointer, as an attacker would keep it."""
    X, y = clf_data
    store.publish("lr", LogisticRegression().fit(X, y))
    old = (store.root / "lr" / "active.json").read_bytes()
    store.publish("lr", LogisticRegression(C=0.01).fit(X, y))
    return old


def test_a_replayed_signed_pointer_is_refused_and_rollback_works(
    tmp_store: Path, key_file: Path, clf_data: tuple[np.ndarray, np.ndarray]
) -> None:
    key = read_key(key_file)
    publisher = ModelStore(tmp_store, key=key, require_signature=True)
    old = _publish_two(publisher, clf_data)
    worker = ModelStore(tmp_store, key=key, require_signature=True)
    assert worker.active_version("lr") == 2
    pointer = tmp_store / "lr" / "active.json"
    current = pointer.read_bytes()
    pointer.write_bytes(old)  # validly signed, one promotion older
    with pytest.raises(SignatureError, match=r"active\.json.*is sequence \d+, older than"):
        worker.active_version("lr")
    with pytest.raises(SignatureError, match="older than"):
        worker.load("lr")
    pointer.write_bytes(current)
    assert worker.active_version("lr") == 2
    # The operator's promote on the replayed pointer, from another process, and then an
    # explicit rollback: each writes a pointer newer than any the worker read, so both are taken.
    pointer.write_bytes(old)
    ModelStore(tmp_store, key=key).promote("lr", 2)
    assert worker.active_version("lr") == 2
    assert ModelStore(tmp_store, key=key).rollback("lr") == 1
    assert json.loads(pointer.read_text())["sequence"] > json.loads(current)["sequence"]
    assert worker.active_version("lr") == 1
    assert worker.load("lr").version == 1
    assert [h["action"] for h in worker.promotion_history("lr")] == [
        "promote",
        "promote",
        "rollback",
    ]


def test_strategy_and_decision_pointers_refuse_a_replay(
    tmp_store: Path, key_file: Path, clf_data: tuple[np.ndarray, np.ndarray]
) -> None:
    key = read_key(key_file)
    store = ModelStore(tmp_store, key=key)
    _publish_two(store, clf_data)
    store.publish_strategy("vote", {"name": "soft_vote"}, {}, fitted_on={"lr": 1})
    strategy_pointer = tmp_store / "_strategies" / "vote" / "active.json"
    old_strategy = strategy_pointer.read_bytes()
    store.publish_strategy("vote", {"name": "hard_vote"}, {}, fitted_on={"lr": 2})
    store.publish_decision("group", {"strategy": "soft_vote"}, expected=None)
    decision_pointer = tmp_store / "_decisions" / "group" / "active.json"
    old_decision = decision_pointer.read_bytes()
    store.publish_decision("group", {"strategy": "hard_vote"}, expected=1)
    worker = ModelStore(tmp_store, key=key)
    assert worker.active_strategy_version("vote") == 2
    decision = worker.load_decision("group")
    assert decision is not None and decision.strategy == "hard_vote"
    strategy_pointer.write_bytes(old_strategy)
    decision_pointer.write_bytes(old_decision)
    with pytest.raises(SignatureError, match="older than"):
        worker.load_strategy("vote")
    with pytest.raises(SignatureError, match="older than"):
        worker.load_decision("group")


def test_pointers_without_a_sequence_still_load(
    tmp_store: Path, key_file: Path, clf_data: tuple[np.ndarray, np.ndarray]
) -> None:
    key = read_key(key_file)
    store = ModelStore(tmp_store, key=key, require_signature=True)
    _publish_two(store, clf_data)
    pointer = tmp_store / "lr" / "active.json"
    doc = json.loads(pointer.read_text())
    del doc["sequence"], doc["signature"]
    pointer.write_text(json.dumps(Signer(key, True).sign(POINTER_PURPOSE, doc)))
    old_store = ModelStore(tmp_store, key=key, require_signature=True)
    assert old_store.active_version("lr") == 2
    assert old_store.load("lr").version == 2
    old_store.promote("lr", 1)  # the next write starts the sequence
    assert json.loads(pointer.read_text())["sequence"] > 0
    doc["sequence"] = -1
    pointer.write_text(json.dumps(Signer(key, True).sign(POINTER_PURPOSE, doc)))
    with pytest.raises(StoreLayoutError, match="'sequence'"):
        ModelStore(tmp_store, key=key).active_version("lr")


def test_store_sign_signs_a_store_published_before_its_key(
    tmp_store: Path, key_file: Path, clf_data: tuple[np.ndarray, np.ndarray]
) -> None:
    X, _ = clf_data
    unsigned = ModelStore(tmp_store)
    _publish_two(unsigned, clf_data)
    unsigned.publish_strategy("vote", {"name": "soft_vote"}, {}, fitted_on={"lr": 2})
    unsigned.publish_dataset("heldout", {"X": X})
    unsigned.publish_decision("group", {"strategy": "soft_vote"}, expected=None)
    key = read_key(key_file)
    required = ModelStore(tmp_store, key=key, require_signature=True)
    with pytest.raises(SignatureError, match="not signed"):
        required.load("lr")
    with pytest.raises(SigningKeyError):
        unsigned.sign_unsigned()

    assert main(["store", "--store", str(tmp_store), "--key-file", str(key_file), "sign"]) == 0
    assert required.load("lr").signed and required.load("lr", 1).signed
    assert required.load_strategy("vote").signed
    assert required.load_dataset("heldout").signed
    decision = required.load_decision("group")
    assert decision is not None and decision.signed
    assert required.promotion_history("lr") == unsigned.promotion_history("lr")
    assert ModelStore(tmp_store, key=key).sign_unsigned() == []  # nothing left to sign

    # A version whose files no longer match its manifest is refused, not blessed.
    unsigned.publish("lr", LogisticRegression(C=0.1).fit(*clf_data))
    model_file = tmp_store / "lr" / "3" / "model.skops"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match=r"version 3: file 'model"):
        ModelStore(tmp_store, key=key).sign_unsigned()
    with pytest.raises(SignatureError, match="not signed"):
        required.manifest("lr", 3)


def test_store_rollback_from_the_cli_writes_a_higher_sequence(
    tmp_store: Path, key_file: Path, clf_data: tuple[np.ndarray, np.ndarray], capsys
) -> None:
    store = ModelStore(tmp_store, key=read_key(key_file))
    _publish_two(store, clf_data)
    pointer = tmp_store / "lr" / "active.json"
    before = json.loads(pointer.read_text())["sequence"]
    args = ["store", "--store", str(tmp_store), "--key-file", str(key_file), "rollback", "lr"]
    assert main(args) == 0
    assert "rolled back to v1" in capsys.readouterr().out
    after = json.loads(pointer.read_text())
    assert after["version"] == 1 and after["sequence"] > before
