"""The :class:`ModelStore` facade: models, fitted strategies and held-out data sets."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._arrays_io import dump_arrays, load_arrays
from ._loaded import LoadedModel, StoredDataset, StoredStrategy
from ._manifest import read_manifest, read_verified_files
from ._publish import SKLEARN_FILE, TORCH_FILE, describe_sklearn, describe_torch, jsonable_scores
from ._sklearn_io import load_sklearn, make_sklearn_predictor
from ._torch_io import load_torch, make_torch_predictor
from ._torch_nets import validate_spec
from ._versions import VersionedDir, check_name
from .errors import (
    IntegrityError,
    InvalidSpecError,
    ModelNotFoundError,
    PublishError,
    StoreLayoutError,
)

__all__ = ["ModelStore"]

STRATEGIES_DIR = "_strategies"
DATASETS_DIR = "_datasets"
_META_FILE = "meta.json"
_ARRAYS_FILE = "arrays.npz"
_MODEL_FIELDS = ("framework", "input_schema", "task", "classes", "tasks", "n_outputs")


class ModelStore:
    """Versioned, checksummed models on a local (or shared POSIX) file system.

    Parameters
    ----------
    root : str or Path
        Store directory; created on first publish.

    Notes
    -----
    Layout::

        root/<model>/<version>/{manifest.json, model.skops | model.safetensors}
        root/<model>/active.json                      promoted version + history
        root/_strategies/<name>/<version>/{manifest.json, meta.json, arrays.npz}
        root/_strategies/<name>/active.json
        root/_datasets/<name>/<version>/{manifest.json, arrays.npz}
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreLayoutError(str(self.root), "store root is not a directory")
        self._models = VersionedDir(self.root, "model")
        self._strategies = VersionedDir(self.root / STRATEGIES_DIR, "strategy")
        self._datasets = VersionedDir(self.root / DATASETS_DIR, "dataset")

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # -- models -------------------------------------------------------------------------

    def publish(
        self,
        name: str,
        model: Any,
        *,
        framework: str = "sklearn",
        input_schema: Mapping[str, Any] | None = None,
        task: str | None = None,
        classes: Sequence[Any] | None = None,
        output_kind: str | None = None,
        tasks: Sequence[Mapping[str, Any]] | None = None,
        scores: Mapping[str, float] | None = None,
        spec: Mapping[str, Any] | None = None,
        promote: bool = True,
    ) -> int:
        """Store a fitted model as the next version of ``name``.

        Parameters
        ----------
        name : str
            Letters, digits, ``_.-``; starts with a letter or digit.
        model : estimator or torch.nn.Module
            A fitted scikit-learn estimator, or a module from :func:`build_torch_model`.
        framework : {"sklearn", "torch"}
        input_schema : dict, optional
            ``{"n_features": int, "feature_names": list of str or None}``; inferred from the
            model (``n_features_in_``, ``feature_names_in_``, ``spec["n_inputs"]``) if omitted.
        task : {"classification", "regression", "multitask"}, optional
            Inferred when omitted (from ``predict_proba`` or from the spec).
        classes : list, optional
            Output column order for classification; defaults to the model's ``classes_``
            (torch: ``range(n_outputs)``). A permutation of ``classes_`` reorders columns.
        output_kind : {"proba", "value"}, optional
            Checked against the task ("mixed" for multitask).
        tasks : list of dict, optional
            Multitask torch models: ``{"name", "type", "n_outputs", "classes"}`` per task,
            in the spec's order; defaults to the spec's tasks.
        scores : dict of str to float, optional
            Held-out scores, recorded in the manifest.
        spec : dict, optional
            Torch architecture spec (required for torch).
        promote : bool, default=True
            Make the new version the active one.

        Returns
        -------
        int
            The new version (1, 2, 3, ...).
        """
        check_name(name, kind="model")
        describe_args: dict[str, Any] = {
            "input_schema": input_schema,
            "task": task,
            "classes": classes,
            "output_kind": output_kind,
            "tasks": tasks,
        }
        if framework == "sklearn":
            if spec is not None:
                raise PublishError(name, "spec is for torch models only")
            files, fields = describe_sklearn(name, model, **describe_args)
        elif framework == "torch":
            files, fields = describe_torch(name, model, spec=spec, **describe_args)
        else:
            raise PublishError(name, f"framework must be 'sklearn' or 'torch', got {framework!r}")
        fields["scores"] = jsonable_scores(name, scores)
        return self._models.publish(name, files, fields, promote=promote)

    def models(self) -> list[str]:
        """Names of models with at least one complete version."""
        return self._models.names()

    def versions(self, name: str) -> list[int]:
        """Complete versions of model ``name``, ascending (empty if none)."""
        return self._models.versions(name)

    def active_version(self, name: str) -> int:
        """The promoted version of ``name``.

        One read of a small pointer file (``root/<name>/active.json``): cheap enough to poll
        every second for hot reload.

        Raises
        ------
        ModelNotFoundError
            Nothing has been promoted.
        """
        return self._models.active_version(name)

    def manifest(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The manifest of a version (``None``: the promoted one), without checking files."""
        version = self._models.resolve(name, version)
        return read_manifest(self._models.path(name, version), name, version, kind="model")

    def promote(self, name: str, version: int) -> None:
        """Make ``version`` the active one (atomic pointer replace, recorded in the history)."""
        self._models.promote(name, version)

    def rollback(self, name: str) -> int:
        """Go back to the previously promoted version and return it.

        Raises
        ------
        RollbackError
            Fewer than two promotions are on record.
        """
        return self._models.rollback(name)

    def promotion_history(self, name: str) -> list[dict[str, Any]]:
        """``[{"version", "action" ("promote"|"rollback"), "at"}]``, oldest first."""
        return self._models.history(name)

    def load(self, name: str, version: int | None = None) -> LoadedModel:
        """Verify and load a version (``None``: the promoted one).

        Raises
        ------
        ModelNotFoundError
            No such version, or nothing promoted.
        IntegrityError
            A file is missing, altered or unlisted; names the file.
        UnsafeModelError
            A file would need code outside the trusted types to load; nothing is run.
        """
        version = self._models.resolve(name, version)
        vdir = self._models.path(name, version)
        manifest = read_manifest(vdir, name, version, kind="model")
        missing = [key for key in _MODEL_FIELDS if key not in manifest]
        if missing:
            raise IntegrityError(name, version, "manifest.json", f"missing fields {missing}")
        contents = read_verified_files(vdir, manifest, kind="model")
        framework = manifest["framework"]
        if framework == "sklearn":
            estimator = load_sklearn(
                _file(contents, SKLEARN_FILE, name, version),
                name=name,
                version=version,
                filename=SKLEARN_FILE,
            )
            predictor = make_sklearn_predictor(
                estimator,
                task=manifest["task"],
                classes=_checked_classes(manifest, estimator),
                n_outputs=manifest["n_outputs"],
            )
            return LoadedModel(manifest, estimator, predictor)
        if framework == "torch":
            try:
                spec = validate_spec(manifest["spec"])
            except InvalidSpecError as exc:
                raise IntegrityError(name, version, "manifest.json", str(exc)) from exc
            module = load_torch(
                _file(contents, TORCH_FILE, name, version),
                spec,
                name=name,
                version=version,
                filename=TORCH_FILE,
            )
            return LoadedModel(manifest, module, make_torch_predictor(module, spec))
        raise IntegrityError(name, version, "manifest.json", f"unknown framework {framework!r}")

    # -- fitted strategies --------------------------------------------------------------

    def publish_strategy(
        self,
        name: str,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        fitted_on: Mapping[str, int],
        *,
        promote: bool = True,
    ) -> int:
        """Store a fitted combining strategy; the store does not interpret it.

        Parameters
        ----------
        meta : dict
            JSON-serialisable description (strategy name, parameters, ...).
        arrays : dict of str to ndarray
            Fitted state; numeric or string dtypes (object arrays are refused).
        fitted_on : dict of str to int
            Model name -> version the strategy was fitted on; each must exist.
        """
        check_name(name, kind="strategy")
        try:
            meta_bytes = json.dumps(dict(meta), indent=1, sort_keys=True).encode()
        except (TypeError, ValueError) as exc:
            raise PublishError(name, f"meta is not JSON-serialisable: {exc}") from exc
        fitted: dict[str, int] = {}
        for model_name, model_version in fitted_on.items():
            fitted[model_name] = self._models.resolve(model_name, int(model_version))
        files = {_META_FILE: meta_bytes, _ARRAYS_FILE: dump_arrays(arrays, name=name)}
        return self._strategies.publish(name, files, {"fitted_on": fitted}, promote=promote)

    def strategies(self) -> list[str]:
        """Names of stored strategies."""
        return self._strategies.names()

    def strategy_versions(self, name: str) -> list[int]:
        """Complete versions of strategy ``name``, ascending."""
        return self._strategies.versions(name)

    def active_strategy_version(self, name: str) -> int:
        """The promoted version of strategy ``name`` (cheap pointer read)."""
        return self._strategies.active_version(name)

    def promote_strategy(self, name: str, version: int) -> None:
        """Make ``version`` the active version of strategy ``name``."""
        self._strategies.promote(name, version)

    def rollback_strategy(self, name: str) -> int:
        """Go back to the previously promoted strategy version and return it."""
        return self._strategies.rollback(name)

    def load_strategy(self, name: str, version: int | None = None) -> StoredStrategy:
        """Verify and load a strategy version (``None``: the promoted one)."""
        version = self._strategies.resolve(name, version)
        vdir = self._strategies.path(name, version)
        manifest = read_manifest(vdir, name, version, kind="strategy")
        contents = read_verified_files(vdir, manifest, kind="strategy")
        meta_bytes = _file(contents, _META_FILE, name, version, kind="strategy")
        try:
            meta = json.loads(meta_bytes)
        except ValueError as exc:
            raise IntegrityError(name, version, _META_FILE, "not JSON", kind="strategy") from exc
        arrays = load_arrays(
            _file(contents, _ARRAYS_FILE, name, version, kind="strategy"),
            name=name,
            version=version,
            filename=_ARRAYS_FILE,
            kind="strategy",
        )
        fitted_on = {str(k): int(v) for k, v in manifest.get("fitted_on", {}).items()}
        return StoredStrategy(name, version, meta, arrays, fitted_on, manifest)

    # -- held-out data sets -------------------------------------------------------------

    def publish_dataset(self, name: str, arrays: Mapping[str, np.ndarray]) -> int:
        """Store named arrays (e.g. ``X``, ``y`` of a held-out split) as a new version."""
        check_name(name, kind="dataset")
        files = {_ARRAYS_FILE: dump_arrays(arrays, name=name)}
        shapes = {k: list(np.shape(v)) for k, v in arrays.items()}
        return self._datasets.publish(name, files, {"shapes": shapes}, promote=False)

    def datasets(self) -> list[str]:
        """Names of stored data sets."""
        return self._datasets.names()

    def dataset_versions(self, name: str) -> list[int]:
        """Complete versions of data set ``name``, ascending."""
        return self._datasets.versions(name)

    def load_dataset(self, name: str, version: int | None = None) -> StoredDataset:
        """Verify and load a data set version (``None``: the latest)."""
        if version is None:
            available = self._datasets.versions(name)
            if not available:
                raise ModelNotFoundError(name, None, kind="dataset")
            version = available[-1]
        version = self._datasets.resolve(name, version)
        vdir = self._datasets.path(name, version)
        manifest = read_manifest(vdir, name, version, kind="dataset")
        contents = read_verified_files(vdir, manifest, kind="dataset")
        arrays = load_arrays(
            _file(contents, _ARRAYS_FILE, name, version, kind="dataset"),
            name=name,
            version=version,
            filename=_ARRAYS_FILE,
            kind="dataset",
        )
        return StoredDataset(name, version, arrays, manifest)


def _file(
    contents: Mapping[str, bytes], filename: str, name: str, version: int, *, kind: str = "model"
) -> bytes:
    try:
        return contents[filename]
    except KeyError as exc:
        raise IntegrityError(name, version, filename, "not in the manifest", kind=kind) from exc


def _checked_classes(manifest: Mapping[str, Any], estimator: Any) -> list[Any] | None:
    if manifest["task"] != "classification":
        return None
    classes = manifest["classes"]
    own = np.asarray(estimator.classes_).tolist()
    if not isinstance(classes, list) or sorted(map(repr, classes)) != sorted(map(repr, own)):
        raise IntegrityError(
            manifest["name"], manifest["version"], "manifest.json", "classes do not match the model"
        )
    return classes
