"""Opening the configured model store: its folder, signing key and limits (light: no models)."""

from __future__ import annotations

from pathlib import Path

from model_store import ModelStore, ModelStoreError, StoreLimits, default_trial_cache, read_key
from worker.config import StoreSettings
from worker.errors import ConfigError

__all__ = ["open_store"]


def open_store(settings: StoreSettings | Path) -> ModelStore:
    """The configured store (with its signing key and limits), or a :class:`ConfigError`
    naming the ``store`` key at fault."""
    if isinstance(settings, Path):
        settings = StoreSettings(path=settings)
    path = settings.path
    if not Path(path).is_dir():
        raise ConfigError("store.path", f"{path} is not a directory")
    key = None
    if settings.key_file is not None:
        try:
            key = read_key(settings.key_file)
        except ModelStoreError as exc:
            raise ConfigError("store.key_file", f"{exc}") from exc
    try:
        limits = StoreLimits(**settings.limits)
    except (TypeError, ValueError) as exc:
        raise ConfigError("store.limits", f"{exc}") from exc
    try:
        store = ModelStore(
            path,
            key=key,
            require_signature=settings.require_signature,
            limits=limits,
            trial_cache=default_trial_cache() if settings.trial_cache else None,
        )
    except ModelStoreError as exc:
        raise ConfigError("store", f"{exc}") from exc
    return store
