"""The worker's side of a store it need not trust (issue 18): signing keys in config and CLI,
refusals at start-up (exit 2, the file named) and at hot reload (counted, never fatal), stored
strategy fits refused visibly before a refit. The store's own defences: tests/model_store."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from model_store import ModelStore, SignatureError, generate_key, read_key
from worker import cli
from worker.config import ModelRef, settings_from_dict
from worker.errors import ConfigError
from worker.inference.models import ModelSet
from worker.inference.reload import Reloader
from worker.inference.serving import build_serving
from worker.inference.store import open_store
from worker.metrics import Metrics
from worker.service.worker import Worker

pytestmark = pytest.mark.slow  # its cases load candidates in trial children

MODELS = [{"name": "alpha"}, {"name": "beta"}]


@pytest.fixture
def keyed(tmp_path: Path, publish_tiny: Callable[..., int]) -> tuple[Path, Path]:
    """A store whose models and held-out set are signed with a key kept beside it."""
    key_file = generate_key(tmp_path / "store.key")
    store = ModelStore(tmp_path / "store", key=read_key(key_file))
    for name in ("alpha", "beta"):
        publish_tiny(store, name)
    gen = np.random.default_rng(0)
    X = gen.normal(size=(30, 3))
    store.publish_dataset("heldout", {"X": X, "y": (X[:, 0] > 0).astype(np.int64)})
    return tmp_path / "store", key_file


def settings_for(store: Path, key_file: Path | None = None, **store_keys: Any) -> Any:
    section: dict[str, Any] = {"path": str(store), **store_keys}
    if key_file is not None:
        section["key_file"] = str(key_file)
    return settings_from_dict(
        {"store": section, "models": MODELS, "strategy": {"name": "soft_vote"}}, environ={}
    )


# -- config ------------------------------------------------------------------------------------


def test_the_store_is_a_folder_or_a_section_and_the_env_adds_the_key(tmp_path: Path) -> None:
    env = {"STREAMFUSE_STORE__KEY_FILE": "keys/k", "STREAMFUSE_STORE__REQUIRE_SIGNATURE": "true"}
    s = settings_from_dict(
        {"store": "s", "models": MODELS, "strategy": {"name": "soft_vote"}},
        base_dir=tmp_path,
        environ=env,
    )
    assert s.store.path == tmp_path / "s"
    assert s.store.key_file == tmp_path / "keys" / "k"
    assert s.store.require_signature is True


@pytest.mark.parametrize(
    ("section", "key", "problem"),
    [
        ({"path": "s", "require_signature": True}, "store.require_signature", "key_file"),
        ({"path": "s", "limits": {"max_file_byte": 10}}, "store.limits.max_file_byte", "mean"),
        ({"path": "s", "limits": {"max_tasks": 0}}, "store.limits.max_tasks", "positive"),
        ({"path": "s", "keyfile": "k"}, "store.keyfile", "unknown key"),
    ],
)
def test_bad_store_settings_name_the_key(section: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_dict(
            {"store": section, "models": MODELS, "strategy": {"name": "soft_vote"}}, environ={}
        )
    assert info.value.key == key and problem in info.value.problem


# -- start-up ----------------------------------------------------------------------------------


def test_a_signed_store_is_verified_and_the_gauge_says_so(
    keyed: tuple[Path, Path], registry: CollectorRegistry
) -> None:
    store, key_file = keyed
    worker = Worker(settings_for(store, key_file, require_signature=True), registry)
    worker.pipeline.close()
    assert registry.get_sample_value("streamfuse_store_signed") == 1
    assert all(m.signed for m in worker.model_set.models)


def test_an_unsigned_store_works_with_a_warning_and_a_gauge_of_0(
    tmp_path: Path,
    publish_tiny: Callable[..., int],
    caplog: pytest.LogCaptureFixture,
    registry: CollectorRegistry,
) -> None:
    store = ModelStore(tmp_path / "store")
    for name in ("alpha", "beta"):
        publish_tiny(store, name)
    with caplog.at_level(logging.WARNING, logger="streamfuse.worker"):
        worker = Worker(_with_heldout(tmp_path / "store", store), registry)
    worker.pipeline.close()
    assert registry.get_sample_value("streamfuse_store_signed") == 0
    assert any("not signed" in r.getMessage() for r in caplog.records)


def _with_heldout(root: Path, store: ModelStore) -> Any:
    X = np.random.default_rng(0).normal(size=(30, 3))
    store.publish_dataset("heldout", {"X": X, "y": (X[:, 0] > 0).astype(np.int64)})
    return settings_for(root)


def test_require_signature_refuses_an_unsigned_store_with_exit_2(
    tmp_path: Path, publish_tiny: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "store")
    for name in ("alpha", "beta"):
        publish_tiny(store, name)
    key_file = generate_key(tmp_path / "k")
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"path": "store", "key_file": "k", "require_signature": True},
                "models": MODELS,
                "strategy": {"name": "soft_vote"},
            }
        )
    )
    assert key_file.exists()
    assert cli.main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "config key 'models'" in err and "'alpha'" in err
    assert "active.json" in err and "not signed" in err


def test_a_key_file_that_is_missing_stops_start_up_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    with pytest.raises(ConfigError) as info:
        open_store(settings_for(tmp_path / "store", tmp_path / "nope.key").store)
    assert info.value.key == "store.key_file"


# -- the CLI -----------------------------------------------------------------------------------


def test_keygen_then_promote_signs_the_pointer(
    keyed: tuple[Path, Path], publish_tiny: Callable[..., int], tmp_path: Path, capsys: Any
) -> None:
    store, key_file = keyed
    new_key = tmp_path / "new.key"
    assert cli.main(["store", "--store", str(store), "keygen", str(new_key)]) == 0
    assert len(read_key(new_key)) > 0
    assert cli.main(["store", "--store", str(store), "keygen", str(new_key)]) == 1  # no overwrite
    publish_tiny(ModelStore(store, key=read_key(key_file)), "alpha", seed=3)  # v2
    argv = ["store", "--store", str(store), "--key-file", str(key_file), "promote", "alpha", "1"]
    assert cli.main(argv) == 0
    verified = ModelStore(store, key=read_key(key_file), require_signature=True)
    assert verified.active_version("alpha") == 1
    # a pointer written with another key is refused by every reader holding the real one
    argv[4] = str(new_key)
    argv[-1] = "2"
    cli.main(argv)
    with pytest.raises(SignatureError):
        ModelStore(store, key=read_key(key_file)).active_version("alpha")


# -- stored strategies -------------------------------------------------------------------------


def test_a_refused_stored_fit_is_logged_and_counted_before_the_refit(
    keyed: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    root, key_file = keyed
    store = ModelStore(root, key=read_key(key_file))
    model_set = ModelSet(store, [ModelRef(name="alpha"), ModelRef(name="beta")])
    import combiners

    P = np.stack([fn(np.zeros((4, 3))) for fn in model_set.predict_fns])
    meta, arrays = combiners.save_state(combiners.get_combiner("soft_vote").fit(P, [0, 1, 0, 1]))
    store.publish_strategy("soft_vote", meta, arrays, model_set.versions)
    # the attacker rewrites the stored fit (without the key, the signature cannot follow)
    meta_file = next((root / "_strategies").rglob("meta.json"))
    doc = json.loads(meta_file.read_text())
    doc["name"] = "os.path:join"
    meta_file.write_text(json.dumps(doc))
    refused: list[tuple[str, str]] = []
    with caplog.at_level(logging.ERROR, logger="streamfuse.strategies"):
        serving = build_serving(
            store, settings_for(root, key_file), refused=lambda n, w: refused.append((n, w))
        )
    assert serving.active.source == "heldout"  # refit, not the tampered one
    assert [name for name, _ in refused] == ["soft_vote"]
    assert any("refusing the stored fit of soft_vote" in r.getMessage() for r in caplog.records)


# -- hot reload --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [TypeError("manifest field of the wrong type"), RecursionError("nested"), KeyError("x")],
)
def test_any_failure_of_a_candidate_is_a_refusal_not_a_crash(
    keyed: tuple[Path, Path],
    publish_tiny: Callable[..., int],
    monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
    registry: CollectorRegistry,
) -> None:
    root, key_file = keyed
    settings = settings_for(root, key_file)
    store = open_store(settings.store)
    serving = build_serving(store, settings)
    publish_tiny(store, "alpha", seed=9)  # v2, promoted

    def load_candidate(*args: Any) -> Any:
        raise failure

    monkeypatch.setattr(ModelSet, "load_candidate", load_candidate)
    reloader = Reloader(store, settings, Metrics(registry))
    assert reloader.check(serving, None) is None
    assert reloader.wait(60)
    assert reloader.check(serving, None) is None
    refused = {"model": "alpha", "outcome": "refused"}
    assert registry.get_sample_value("streamfuse_model_reloads_total", refused) == 1


def test_a_store_that_cannot_be_read_at_reload_keeps_the_old_snapshot(
    keyed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, registry: CollectorRegistry
) -> None:
    root, key_file = keyed
    settings = settings_for(root, key_file)
    store = open_store(settings.store)
    serving = build_serving(store, settings)

    def broken(self: Any) -> Any:
        raise RuntimeError("the store is gone")

    monkeypatch.setattr(ModelSet, "pending_promotions", broken)
    reloader = Reloader(store, settings, Metrics(registry))
    assert reloader.check(serving, None) is None
    assert reloader.wait(60)
    assert reloader.check(serving, None) is None
