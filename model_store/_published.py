"""What a model answered at publish: a few input rows and its outputs on them, kept with the
version (``published_outputs.npz``, listed and checksummed in the manifest like the model file).

Publish loads the model back from the bytes about to be stored (the loader a worker uses) and
predicts :data:`N_ROWS` seeded rows; a worker that later loads the version predicts the same
rows and compares (:func:`largest_difference`): another library version, a changed loader or
an unsafe runtime that answers differently shows up before the version serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._arrays_io import dump_arrays
from ._limits import StoreLimits
from ._loaded import LoadedModel

__all__ = ["N_ROWS", "OUTPUTS_FILE", "largest_difference", "published_outputs"]

OUTPUTS_FILE = "published_outputs.npz"
N_ROWS = 16
_SEED = 20261207


def _rows(n_features: int) -> np.ndarray:
    """Zeros, then standard normal rows: the same for every publish of a width."""
    X = np.random.default_rng(_SEED).normal(size=(N_ROWS, n_features))
    X[0] = 0.0
    return X


def published_outputs(
    fmt: Any,
    name: str,
    files: Mapping[str, bytes],
    fields: Mapping[str, Any],
    limits: StoreLimits,
) -> bytes:
    """The npz bytes of ``X`` (:data:`N_ROWS`, n_features) and ``outputs`` (N_ROWS,
    n_outputs): the model in ``files`` loaded as a stored version is and run on ``X``."""
    manifest = {"name": name, "version": 0, **fields}
    spec = fmt.manifest_spec(manifest, limits)
    _, predictor = fmt.load(manifest, files[fmt.filename], spec=spec, limits=limits, threads=0)
    loaded = LoadedModel(manifest, None, predictor)
    X = _rows(loaded.n_features)
    outputs = np.asarray(loaded.predict_outputs(X), dtype=np.float64)
    return dump_arrays({"X": X, "outputs": outputs}, name=name)


def largest_difference(model: LoadedModel) -> float | None:
    """The largest absolute difference between ``model``'s outputs now and at publish on the
    rows recorded then (None: the version records none, as those published before)."""
    recorded = model.published
    if recorded is None:
        return None
    X, expected = recorded["X"], recorded["outputs"]
    if (
        X.ndim != 2
        or X.shape[1] != model.n_features
        or expected.shape
        != (
            X.shape[0],
            model.n_outputs,
        )
    ):
        return float("inf")  # recorded for another shape: nothing to compare, so refused
    got = model.predict_outputs(X)
    if not np.isfinite(got).all():
        return float("inf")
    return float(np.max(np.abs(got - expected))) if got.size else 0.0
