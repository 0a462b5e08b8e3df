"""Versioned, checksummed model files with safe loaders per framework.

``ModelStore(root, key=..., require_signature=..., limits=...)`` publishes fitted
scikit-learn estimators (through skops, with an explicit trusted-type list and a structural
check of every tree), torch modules (safetensors weights plus an architecture spec), and
XGBoost (JSON), LightGBM (text) and ONNX models (each checked, trees included, before its
library parses it; each library imported only by its loader),
verifies every file's size and sha256 on load, signs and verifies manifests and pointers
with an HMAC key kept outside the store, never follows a link below the root, and keeps a
promoted version per model that the worker polls for hot reload. It also stores fitted
combining strategies, held-out data sets and reference profiles (for drift) as opaque
arrays. No Kafka here, and no imports of ``worker`` or ``combiners``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._decisions import StoredDecision
from ._limits import StoreLimits
from ._loaded import LoadedModel, StoredDataset, StoredProfile, StoredStrategy
from ._passed import default_directory as default_trial_cache
from ._published import largest_difference
from ._rollouts import StoredRollout
from ._signing import generate_key, read_key
from ._sklearn_io import TRUSTED_BIT_GENERATORS, TRUSTED_TYPES
from ._store import FILE_ENDINGS, FRAMEWORKS, ModelStore
from .errors import (
    ConflictError,
    InputShapeError,
    IntegrityError,
    InvalidNameError,
    InvalidSpecError,
    MissingDependencyError,
    ModelNotFoundError,
    ModelStoreError,
    PublishError,
    RollbackError,
    SignatureError,
    SigningKeyError,
    StoreLayoutError,
    UnsafeModelError,
)

__all__ = [
    "FILE_ENDINGS",
    "FRAMEWORKS",
    "MLP",
    "TRUSTED_BIT_GENERATORS",
    "TRUSTED_TYPES",
    "ConflictError",
    "InputShapeError",
    "IntegrityError",
    "InvalidNameError",
    "InvalidSpecError",
    "LoadedModel",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelStore",
    "ModelStoreError",
    "MultiTaskMLP",
    "PublishError",
    "RollbackError",
    "SignatureError",
    "SigningKeyError",
    "StoreLayoutError",
    "StoreLimits",
    "StoredDataset",
    "StoredDecision",
    "StoredProfile",
    "StoredRollout",
    "StoredStrategy",
    "UnsafeModelError",
    "build_torch_model",
    "default_trial_cache",
    "generate_key",
    "largest_difference",
    "read_key",
]

if TYPE_CHECKING:
    from ._torch_nets import MLP, MultiTaskMLP, build_torch_model


def __getattr__(name: str) -> object:
    # The torch networks import torch (seconds): only when asked for, so that a command that
    # lists the store or serves scikit-learn models alone never pays for it.
    if name in ("MLP", "MultiTaskMLP", "build_torch_model"):
        from . import _torch_nets

        return getattr(_torch_nets, name)
    raise AttributeError(f"module 'model_store' has no attribute {name!r}")
