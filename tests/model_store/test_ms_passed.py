"""Passed trials remembered across processes (``trial_cache``): a store opened again on the same
files, limits and libraries skips the child, still verifies every byte, and tries again whatever
differs; a refusal is never remembered; a directory others could write is not used."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression

import model_store._passed
import model_store._trial
from model_store import IntegrityError, ModelStore, ModelStoreError, StoreLimits
from tests.model_store.hostile import swap_version, version_dir
from worker.config import StoreSettings
from worker.inference.store import open_store

pytestmark = pytest.mark.slow  # each trial starts an interpreter

X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    """v1 and v2 clean ONNX models; v3 re-sealed garbage (the store's own checks refuse it)."""
    root = tmp_path / "store"
    store = ModelStore(root)
    onx = to_onnx(LinearRegression().fit(X, X[:, 0]), X[:1])
    for _ in range(3):
        store.publish("m", onx, framework="onnx")
    swap_version(root, "m", 3, "model.onnx", b"not an onnx graph")
    return root


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The candidates each trial child was given; the in-process memory starts empty, as in a
    new process, at each ``_fresh_process()``."""
    tried: list[int] = []
    real = model_store._trial._run_child

    def counted(store: Any, candidates: Any, threads: int) -> Any:
        tried.append(len(candidates))
        return real(store, candidates, threads)

    monkeypatch.setattr(model_store._trial, "_run_child", counted)
    monkeypatch.setattr(model_store._trial, "_tried", {})
    yield tried


def _fresh_process() -> None:
    model_store._trial._tried.clear()


def _store(root: Path, cache: Path | None, **limits: int) -> ModelStore:
    return ModelStore(root, limits=StoreLimits(**limits), trial_cache=cache)


def test_a_second_process_skips_the_child_and_still_verifies_the_bytes(
    store_root: Path, tmp_path: Path, children: list[int]
) -> None:
    cache = tmp_path / "trials"
    _store(store_root, cache).load_bounded([("m", 1, None), ("m", 2, None)])
    assert children == [2]
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)

    _fresh_process()
    (one, two) = _store(store_root, cache).load_bounded([("m", 1, None), ("m", 2, None)])
    assert children == [2], "both passed in an earlier process: no child"
    np.testing.assert_allclose(one.predict_outputs(X[:5]), two.predict_outputs(X[:5]))

    _fresh_process()
    (version_dir(store_root, "m", version=2) / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match=r"model\.onnx"):
        _store(store_root, cache).load_bounded([("m", 2, None)])  # same manifest, other bytes
    assert children == [2]


def test_whatever_differs_is_tried_again(
    store_root: Path, tmp_path: Path, children: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "trials"
    _store(store_root, cache).load_bounded([("m", 1, None)])
    _fresh_process()
    _store(store_root, cache, max_load_wall_s=299).load_bounded([("m", 1, None)])  # limits
    _fresh_process()
    _store(store_root, cache).load_bounded([("m", 1, None)], threads=1)  # threads
    _fresh_process()
    _store(store_root, None).load_bounded([("m", 1, None)])  # no cache
    _fresh_process()
    _store(store_root, cache).load_bounded([("m", 1, X[:5])])  # a caller's probe, always
    _fresh_process()
    monkeypatch.setattr(model_store._passed, "_versions", lambda: '{"onnxruntime": "0.0"}')
    _store(store_root, cache).load_bounded([("m", 1, None)])  # other library versions
    assert children == [1, 1, 1, 1, 1, 1]


def test_a_refusal_is_not_remembered(store_root: Path, tmp_path: Path, children: list[int]) -> None:
    cache = tmp_path / "trials"
    for _ in range(2):
        _fresh_process()
        with pytest.raises(ModelStoreError, match=r"model\.onnx"):
            _store(store_root, cache).load_bounded([("m", 3, None)])
    assert children == [1, 1]
    assert not list(cache.glob("*.json"))


def test_a_directory_others_can_write_is_not_used(
    store_root: Path, tmp_path: Path, children: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "trials"
    _store(store_root, cache).load_bounded([("m", 1, None)])
    cache.chmod(0o777)
    _fresh_process()
    with caplog.at_level(logging.WARNING, logger="model_store"):
        _store(store_root, cache).load_bounded([("m", 1, None)])
    assert children == [1, 1]
    assert "others may write it" in caplog.text


def test_an_entry_that_is_a_link_is_not_read(
    store_root: Path, tmp_path: Path, children: list[int]
) -> None:
    cache = tmp_path / "trials"
    _store(store_root, cache).load_bounded([("m", 1, None)])
    (entry,) = cache.glob("*.json")
    target = tmp_path / "elsewhere.json"
    entry.rename(target)
    os.symlink(target, entry)
    _fresh_process()
    _store(store_root, cache).load_bounded([("m", 1, None)])
    assert children == [1, 1]


def test_the_worker_remembers_in_the_user_s_cache_unless_told_not_to(
    store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, children: list[int]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    open_store(StoreSettings(path=store_root)).load_bounded([("m", 1, None)])
    assert list((tmp_path / "xdg" / "streamfuse" / "trials").glob("*.json"))
    _fresh_process()
    off = StoreSettings(path=store_root, trial_cache=False)
    open_store(off).load_bounded([("m", 1, None)])
    assert children == [1, 1]
