"""Versioned, checksummed model files with safe loaders per framework.

``ModelStore(root)`` publishes fitted scikit-learn estimators (through skops, with an
explicit trusted-type list) and torch modules (safetensors weights plus an architecture
spec), verifies every file's sha256 on load, and keeps a promoted version per model that
the worker polls for hot reload. It also stores fitted combining strategies and held-out
data sets as opaque arrays. No Kafka here, and no imports of ``worker`` or ``combiners``.
"""

from __future__ import annotations

from ._loaded import LoadedModel, StoredDataset, StoredStrategy
from ._sklearn_io import TRUSTED_TYPES
from ._store import ModelStore
from ._torch_nets import MLP, MultiTaskMLP, build_torch_model
from .errors import (
    InputShapeError,
    IntegrityError,
    InvalidNameError,
    InvalidSpecError,
    ModelNotFoundError,
    ModelStoreError,
    PublishError,
    RollbackError,
    StoreLayoutError,
    UnsafeModelError,
)

__all__ = [
    "MLP",
    "TRUSTED_TYPES",
    "InputShapeError",
    "IntegrityError",
    "InvalidNameError",
    "InvalidSpecError",
    "LoadedModel",
    "ModelNotFoundError",
    "ModelStore",
    "ModelStoreError",
    "MultiTaskMLP",
    "PublishError",
    "RollbackError",
    "StoreLayoutError",
    "StoredDataset",
    "StoredStrategy",
    "UnsafeModelError",
    "build_torch_model",
]
