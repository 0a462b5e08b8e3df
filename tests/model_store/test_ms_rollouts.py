"""Rollout records: signed, versioned, checked for shape, published compare-and-set."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from model_store import (
    ConflictError,
    IntegrityError,
    ModelStore,
    PublishError,
    SignatureError,
)

KEY = b"rollout-test-key-" * 2


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "candidate": {"model": "rf", "version": 3},
        "steps": [1, 5, 25, 50, 100],
        "step": 0,
        "status": "running",
        "gates": {"min_labels": 200, "min_duration_s": 60},
        "history": [{"action": "start", "step": 0, "share": 1}],
    }
    return {**base, **changes}


def test_a_rollout_is_versioned_and_each_state_is_kept(tmp_store: Path) -> None:
    store = ModelStore(tmp_store, key=KEY)
    assert store.load_rollout("group") is None and store.active_rollout_version("group") is None
    assert store.publish_rollout("group", record(), expected=None) == 1
    assert store.publish_rollout("group", record(step=1), expected=1) == 2
    active = store.load_rollout("group")
    assert active is not None and active.version == 2 and active.signed
    assert active.record["step"] == 1
    assert [r.record["step"] for r in store.rollout_history("group")] == [0, 1]
    loaded = store.load_rollout("group", 1)
    assert loaded is not None and loaded.record == record()


def test_two_writers_from_the_same_state_one_wins(tmp_store: Path) -> None:
    store = ModelStore(tmp_store, key=KEY)
    store.publish_rollout("group", record(), expected=None)
    store.publish_rollout("group", record(step=1), expected=1)
    with pytest.raises(ConflictError) as caught:
        store.publish_rollout("group", record(step=1), expected=1)
    assert caught.value.current == 2


def _race(stores: list[ModelStore], expected: int | None) -> tuple[list[int], int]:
    """Every store publishes from state ``expected`` at once: the versions won, and how many
    lost with a ConflictError."""
    barrier = threading.Barrier(len(stores))
    won: list[int] = []
    lost: list[ConflictError] = []

    def advance(store: ModelStore, who: int) -> None:
        barrier.wait()
        try:
            won.append(store.publish_rollout("group", record(by=who), expected=expected))
        except ConflictError as exc:
            lost.append(exc)

    threads = [threading.Thread(target=advance, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, len(lost)


def test_racing_writers_advance_a_rollout_once(tmp_store: Path) -> None:
    ModelStore(tmp_store, key=KEY).publish_rollout("group", record(), expected=None)
    for round_ in range(10):
        stores = [ModelStore(tmp_store, key=KEY) for _ in range(4)]
        expected = stores[0].active_rollout_version("group")
        won, n_lost = _race(stores, expected)
        assert len(won) == 1 and n_lost == 3, round_
        assert won[0] == (expected or 0) + 1
    assert len(ModelStore(tmp_store, key=KEY).rollout_history("group")) == 11


def test_a_record_altered_without_the_key_is_refused(tmp_store: Path) -> None:
    store = ModelStore(tmp_store, key=KEY)
    store.publish_rollout("group", record(), expected=None)
    version_dir = tmp_store / "_rollouts" / "group" / "1"
    data = json.loads((version_dir / "rollout.json").read_text())
    data["step"] = 4  # straight to 100%
    altered = json.dumps(data).encode()
    (version_dir / "rollout.json").write_bytes(altered)
    with pytest.raises(IntegrityError, match=r"rollout\.json"):
        ModelStore(tmp_store, key=KEY).load_rollout("group")
    # The manifest made to match the altered file: its signature no longer does.
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["files"]["rollout.json"] = {
        "sha256": hashlib.sha256(altered).hexdigest(),
        "size": len(altered),
    }
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SignatureError):
        ModelStore(tmp_store, key=KEY).load_rollout("group")


def test_an_unsigned_rollout_is_refused_when_signatures_are_required(tmp_store: Path) -> None:
    ModelStore(tmp_store).publish_rollout("group", record(), expected=None)
    with pytest.raises(SignatureError, match="not signed"):
        ModelStore(tmp_store, key=KEY, require_signature=True).load_rollout("group")
    assert ModelStore(tmp_store, key=KEY).sign_unsigned()  # store sign covers rollouts
    signed = ModelStore(tmp_store, key=KEY, require_signature=True).load_rollout("group")
    assert signed is not None and signed.signed


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"candidate": {}}, "neither a model nor a strategy"),
        ({"candidate": {"model": "rf"}}, "'version'"),
        ({"candidate": {"model": "rf", "version": True}}, "'version'"),
        ({"candidate": {"strategy": 3}}, "'strategy' is not a str"),
        ({"steps": []}, "non-empty list"),
        ({"steps": [5, 1]}, "increasing"),
        ({"steps": [1, 150]}, "increasing"),
        ({"step": 5}, "index into"),
        ({"status": "sideways"}, "'status'"),
        ({"gates": None}, "'gates'"),
        ({"history": [1]}, "'history'"),
    ],
)
def test_malformed_records_are_refused(tmp_store: Path, changes: dict[str, Any], why: str) -> None:
    store = ModelStore(tmp_store)
    with pytest.raises(PublishError, match=why):
        store.publish_rollout("group", record(**changes), expected=None)
    # Written past the check (an unsigned store): refused on load too.
    store.publish_rollout("group", record(), expected=None)
    path = tmp_store / "_rollouts" / "group" / "1"
    bad = json.dumps(record(**changes)).encode()
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["rollout.json"] = {
        "sha256": hashlib.sha256(bad).hexdigest(),
        "size": len(bad),
    }
    (path / "rollout.json").write_bytes(bad)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match=why):
        ModelStore(tmp_store).load_rollout("group")


def test_a_strategy_candidate_needs_no_model(tmp_store: Path) -> None:
    store = ModelStore(tmp_store)
    store.publish_rollout("group", record(candidate={"strategy": "stacking"}), expected=None)
    loaded = store.load_rollout("group")
    assert loaded is not None and loaded.record["candidate"] == {"strategy": "stacking"}
