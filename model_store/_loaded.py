"""What :meth:`ModelStore.load` and friends hand back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputShapeError

__all__ = ["LoadedModel", "StoredDataset", "StoredProfile", "StoredStrategy"]


class LoadedModel:
    """A verified model version, ready to predict.

    Attributes
    ----------
    name : str
    version : int
    manifest : dict
        The version's manifest, as stored.
    framework : {"sklearn", "torch", "xgboost", "lightgbm", "onnx"}
    n_features : int
    feature_names : list of str or None
    task : {"classification", "regression", "multitask"}
    classes : list or None
        Column order of classification outputs.
    tasks : list of dict or None
        Multi-task models: ``{"name", "type", "n_outputs", "classes"}`` in output order.
    task_slices : dict of str to slice
        Column block of each task in ``predict_outputs``'s result (one entry, the model's
        name, for single-task models).
    n_outputs : int
    output_kind : {"proba", "value", "mixed"}
    estimator : object
        The underlying scikit-learn estimator or torch module.
    signed : bool
        The manifest carried a signature that verified with the store's key.
    published : dict of str to ndarray or None
        ``X`` and the ``outputs`` the model gave on it at publish (``published_outputs.npz``);
        None for a version published without them.
    """

    def __init__(
        self,
        manifest: Mapping[str, Any],
        estimator: object,
        predictor: Callable[[np.ndarray], np.ndarray],
        *,
        signed: bool = False,
        published: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.signed = signed
        self.published = None if published is None else dict(published)
        self.manifest: dict[str, Any] = dict(manifest)
        self.name: str = manifest["name"]
        self.version: int = manifest["version"]
        self.framework: str = manifest["framework"]
        schema = manifest["input_schema"]
        self.n_features: int = schema["n_features"]
        self.feature_names: list[str] | None = schema["feature_names"]
        self.task: str = manifest["task"]
        self.classes: list[Any] | None = manifest["classes"]
        self.tasks: list[dict[str, Any]] | None = manifest["tasks"]
        self.n_outputs: int = manifest["n_outputs"]
        self.output_kind: str = manifest["output_kind"]
        self.estimator = estimator
        self._predictor = predictor
        self.task_slices: dict[str, slice] = {}
        start = 0
        for task in self.tasks or [{"name": self.name, "n_outputs": self.n_outputs}]:
            self.task_slices[task["name"]] = slice(start, start + task["n_outputs"])
            start += task["n_outputs"]

    def __repr__(self) -> str:
        return (
            f"LoadedModel(name={self.name!r}, version={self.version}, "
            f"framework={self.framework!r}, task={self.task!r}, n_outputs={self.n_outputs})"
        )

    def predict_outputs(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities or values for a batch.

        Parameters
        ----------
        X : ndarray of shape (n_events, n_features)
            Features, in the order of ``feature_names``.

        Returns
        -------
        ndarray of shape (n_events, n_outputs), float64
            Classification: probabilities, columns ordered as ``classes``. Regression:
            values. Multi-task: the task blocks side by side (see ``task_slices``).

        Raises
        ------
        InputShapeError
            ``X`` is not two-dimensional with ``n_features`` columns.
        """
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise InputShapeError(self.name, self.version, self.n_features, X.shape)
        if X.shape[0] == 0:
            return np.empty((0, self.n_outputs), dtype=np.float64)
        return self._predictor(X)


@dataclass(frozen=True)
class StoredStrategy:
    """A fitted combining strategy as stored: opaque ``meta`` and ``arrays``.

    ``fitted_on`` maps each model name to the version the strategy was fitted on; the
    worker compares it with the versions it serves. ``signed``: the manifest's signature
    verified with the store's key.
    """

    name: str
    version: int
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    fitted_on: dict[str, int]
    manifest: dict[str, Any] = field(repr=False)
    signed: bool = False


@dataclass(frozen=True)
class StoredDataset:
    """A held-out data set (named arrays), kept so strategies can be refit."""

    name: str
    version: int
    arrays: dict[str, np.ndarray]
    manifest: dict[str, Any] = field(repr=False)
    signed: bool = False


@dataclass(frozen=True)
class StoredProfile:
    """A reference profile as stored: opaque ``meta`` and ``arrays`` (feature bins, output
    distributions, calibration), ``fitted_on`` the model versions whose outputs it holds."""

    name: str
    version: int
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    fitted_on: dict[str, int]
    manifest: dict[str, Any] = field(repr=False)
    signed: bool = False
