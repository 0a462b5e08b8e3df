"""The :class:`ModelStore` facade: models, fitted strategies and held-out data sets."""

from __future__ import annotations

import contextlib
import json
import operator
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._arrays_io import dump_arrays, load_arrays
from ._decisions import DECISIONS_DIR, DecisionLog, StoredDecision
from ._fields import check_model_fields, check_strategy_fields
from ._formats import FORMATS, format_for
from ._json import parse_json
from ._limits import StoreLimits
from ._loaded import LoadedModel, StoredDataset, StoredProfile, StoredStrategy
from ._manifest import MANIFEST_NAME, ReadContext, read_manifest, read_verified_files
from ._passed import PassedTrials
from ._publish import jsonable_scores
from ._refused import Refused
from ._rollouts import ROLLOUTS_DIR, RolloutLog, StoredRollout
from ._signing import Signer
from ._trial import Candidate, StoreArgs, run_trial
from ._versions import POINTER_NAME, VersionedDir, check_name
from .errors import (
    IntegrityError,
    ModelNotFoundError,
    ModelStoreError,
    PublishError,
    SigningKeyError,
    StoreLayoutError,
)

__all__ = ["FRAMEWORKS", "ModelStore"]

FRAMEWORKS = tuple(FORMATS)

STRATEGIES_DIR = "_strategies"
DATASETS_DIR = "_datasets"
PROFILES_DIR = "_profiles"
_META_FILE = "meta.json"
_ARRAYS_FILE = "arrays.npz"
_MAX_REASON = 300


class _Where:
    """The file being read, so an unexpected error can name it."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        self.version: int | None = None
        self.filename = POINTER_NAME

    def at(self, version: int, filename: str = MANIFEST_NAME) -> None:
        self.version, self.filename = version, filename


@contextlib.contextmanager
def _boundary(kind: str, name: str) -> Iterator[_Where]:
    """One rule for every read: anything that is not a ModelStoreError becomes one.

    A loader can fail in ways no list of exception types covers (a skops node raising
    ``KeyError``, ``RecursionError``, ``MemoryError``, torch's ``RuntimeError``); the caller
    (hot reload, start-up) handles one exception family, and the message names the file.
    """
    where = _Where(kind, name)
    try:
        yield where
    except ModelStoreError:
        raise
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if len(reason) > _MAX_REASON:
            reason = reason[:_MAX_REASON] + "..."
        raise IntegrityError(
            name, where.version, where.filename, f"cannot be loaded ({reason})", kind=kind
        ) from exc


def _version_arg(version: Any) -> int | None:
    """Caller errors stay TypeErrors: a bool, float or str is not a version."""
    if version is None:
        return None
    if isinstance(version, bool):
        raise TypeError(f"version must be an int, got {version!r}")
    return operator.index(version)


class ModelStore:
    """Versioned, checksummed models on a local (or shared POSIX) file system.

    Parameters
    ----------
    root : str or Path
        Store directory; created on first publish. Nothing below it is reached through a
        symlink (the root itself may be one).
    key : bytes, optional
        HMAC-SHA256 signing key (:func:`read_key`), kept outside the store. With a key,
        every manifest and pointer this store writes is signed, and every one it reads is
        verified: a bad signature is always refused, an unsigned file is loaded with a
        warning unless ``require_signature``.
    require_signature : bool, default False
        Refuse unsigned manifests and pointers (needs ``key``).
    limits : StoreLimits, optional
        Size caps; the defaults suit any model this store writes.
    trial_cache : str or Path, optional
        A directory of this user's where :meth:`load_bounded` remembers the trials that
        passed, so that another process loading the same files under the same limits and
        libraries skips the child (:func:`default_trial_cache` is the usual place). None:
        each process tries them once.

    Notes
    -----
    Layout::

        root/<model>/<version>/{manifest.json, model.skops | model.safetensors}
        root/<model>/active.json                      promoted version + history
        root/_strategies/<name>/<version>/{manifest.json, meta.json, arrays.npz}
        root/_strategies/<name>/active.json
        root/_datasets/<name>/<version>/{manifest.json, arrays.npz}
        root/_profiles/<name>/<version>/{manifest.json, meta.json, arrays.npz}
        root/_profiles/<name>/active.json
        root/_decisions/<name>/<version>/{manifest.json, decision.json}
        root/_decisions/<name>/active.json            the strategy a worker group serves
        root/_rollouts/<name>/<version>/{manifest.json, rollout.json}
        root/_rollouts/<name>/active.json             a rollout's state in force
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        require_signature: bool = False,
        limits: StoreLimits | None = None,
        trial_cache: str | os.PathLike[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise StoreLayoutError(str(self.root), "store root is not a directory")
        self.limits = limits if limits is not None else StoreLimits()
        if not isinstance(self.limits, StoreLimits):
            raise TypeError(f"limits must be a StoreLimits, got {type(self.limits).__name__}")
        self._signer = Signer(key, require_signature)
        self._passed = None if trial_cache is None else PassedTrials(trial_cache)
        ctx = ReadContext(self.root, self.limits, self._signer)
        self._ctx = ctx
        self._models = VersionedDir(ctx, (), "model")
        self._strategies = VersionedDir(ctx, (STRATEGIES_DIR,), "strategy")
        self._datasets = VersionedDir(ctx, (DATASETS_DIR,), "dataset")
        self._profiles = VersionedDir(ctx, (PROFILES_DIR,), "profile")
        self._decisions = DecisionLog(ctx)
        self._rollouts = RolloutLog(ctx)

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r}, signing={self.signing!r})"

    @property
    def signing(self) -> str:
        """``"signed"`` when the store has a key (writes sign, reads verify), else
        ``"unsigned"`` (nothing is authenticated: anyone who can write the store chooses
        what is served)."""
        return self._signer.status

    @property
    def require_signature(self) -> bool:
        """Whether unsigned manifests and pointers are refused."""
        return self._signer.require

    @property
    def key_id(self) -> str | None:
        """A short, non-secret name of the signing key (None without a key)."""
        return self._signer.key_id

    def sign_unsigned(self) -> list[str]:
        """Sign every unsigned manifest and pointer in place (``streamfuse store sign``): a
        store published before a key existed. Each version's files are checked against its
        manifest first; pointers get a new sequence. Returns the files signed, relative to
        the root.

        Raises
        ------
        SigningKeyError
            The store has no key.
        IntegrityError
            A version whose files do not match its manifest, or one signed with another key
            (what was signed before it stays signed).
        """
        if self._signer.status != "signed":
            raise SigningKeyError("(key)", "signing a store needs its key (store.key_file)")
        ctx = ReadContext(self.root, self.limits, self._signer.lenient(), self._ctx.newest)
        signed: list[str] = []
        with _boundary("artifact", "*"):
            for collection, kind in (
                ((), "model"),
                ((STRATEGIES_DIR,), "strategy"),
                ((DATASETS_DIR,), "dataset"),
                ((PROFILES_DIR,), "profile"),
                ((DECISIONS_DIR,), "decision"),
                ((ROLLOUTS_DIR,), "rollout"),
            ):
                directory = VersionedDir(ctx, collection, kind)
                for name in directory.names():
                    signed += directory.sign_unsigned(name)
        return signed

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
        source: str | None = None,
    ) -> int:
        """Store a fitted model as the next version of ``name``.

        Parameters
        ----------
        name : str
            Letters, digits, ``_.-``; starts with a letter or digit.
        model : estimator, torch.nn.Module, booster, ModelProto or bytes
            A fitted scikit-learn estimator; a module from :func:`build_torch_model`; an
            XGBoost ``Booster`` or ``XGBModel`` (or its JSON/UBJSON bytes); a LightGBM
            ``Booster`` or ``LGBMModel`` (or its text); an ONNX ``ModelProto`` (or its bytes).
            :meth:`publish_file` imports a file from disk.
        framework : {"sklearn", "torch", "xgboost", "lightgbm", "onnx"}
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
        source : str, optional
            The name of the user's file the model came from, which refusals name
            (:meth:`publish_file`).

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
        files, fields = format_for(framework, name).describe(
            name, model, spec=spec, limits=self.limits, source=source, describe_args=describe_args
        )
        fields["scores"] = jsonable_scores(name, scores)
        return self._models.publish(name, files, fields, promote=promote)

    def publish_file(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        framework: str,
        spec_path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> int:
        """Import a model file as the next version of ``name`` (``streamfuse store publish``).

        ``path`` ends in ``.skops`` (sklearn), ``.safetensors`` (torch, with ``spec_path``, a
        JSON architecture spec), ``.json``/``.ubj`` (xgboost), ``.txt`` (lightgbm) or ``.onnx``;
        a pickle (``.pkl``, ``.pickle``, ``.joblib``, or pickle bytes under any name) is
        refused and never loaded. Other keywords are :meth:`publish`'s.
        """
        from ._import import read_model_file

        check_name(name, kind="model")
        model, spec = read_model_file(
            path, framework, name=name, limits=self.limits, spec_path=spec_path
        )
        return self.publish(
            name, model, framework=framework, spec=spec, source=Path(path).name, **kwargs
        )

    def models(self) -> list[str]:
        """Names of models with at least one complete version."""
        with _boundary("model", "*"):
            return self._models.names()

    def versions(self, name: str) -> list[int]:
        """Complete versions of model ``name``, ascending (empty if none)."""
        with _boundary("model", name):
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
        with _boundary("model", name):
            return self._models.active_version(name)

    def manifest(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The manifest of a version (``None``: the promoted one), without checking files.

        Its signature is verified (when the store has a key); ``"signed"`` says whether it
        was signed.
        """
        version = _version_arg(version)
        with _boundary("model", name) as where:
            version = self._models.resolve(name, version)
            where.at(version)
            manifest, signed = read_manifest(
                self._ctx, self._models.parts(name, version), name, version, kind="model"
            )
            return {**manifest, "signed": signed}

    def promote(self, name: str, version: int) -> None:
        """Make ``version`` the active one (atomic pointer replace, recorded in the history)."""
        with _boundary("model", name):
            self._models.promote(name, version)

    def rollback(self, name: str) -> int:
        """Go back to the previously promoted version and return it.

        Raises
        ------
        RollbackError
            Fewer than two promotions are on record.
        """
        with _boundary("model", name):
            return self._models.rollback(name)

    def promotion_history(self, name: str) -> list[dict[str, Any]]:
        """``[{"version", "action" ("promote"|"rollback"), "at"}]``, oldest first."""
        with _boundary("model", name):
            return self._models.history(name)

    def load(self, name: str, version: int | None = None, *, threads: int = 0) -> LoadedModel:
        """Verify and load a version (``None``: the promoted one).

        ``threads`` caps the threads of an XGBoost, LightGBM or ONNX model's predict calls
        (0: the library's default); scikit-learn and torch models are capped by the caller
        (``threadpoolctl``, ``torch.set_num_threads``).

        Raises
        ------
        ModelNotFoundError
            No such version, or nothing promoted.
        IntegrityError
            A file is missing, altered or unlisted; names the file.
        UnsafeModelError
            A file would need code outside the trusted types to load; nothing is run.
        MissingDependencyError
            The model's framework is not installed (the message names the extra).
        """
        version = _version_arg(version)
        with _boundary("model", name) as where:
            return self._load_model(name, version, where, threads)

    def load_bounded(
        self,
        requests: Sequence[tuple[str, int | None, np.ndarray | None]],
        *,
        threads: int = 0,
    ) -> list[LoadedModel]:
        """Load versions as :meth:`load` does, each first tried in a child process.

        ``requests`` are ``(name, version, probe)``: the version (``None``: the promoted one)
        is loaded and ``probe`` predicted (``None``: zeros of its width) in one child under
        ``limits.max_load_bytes`` of address space and ``max_load_cpu_s`` of CPU, killed
        after ``max_load_wall_s``; then this process loads the very files the child read.

        Raises
        ------
        UnsafeModelError
            A trial ran past a limit or its child died (names the file and the limit).
        ModelStoreError
            As :meth:`load`.
        """
        candidates = []
        for name, version, probe in requests:
            with _boundary("model", name) as where:
                resolved = self._models.resolve(name, _version_arg(version))
                where.at(resolved)
                manifest = self.manifest(name, resolved)
                known = FORMATS.get(manifest["framework"])
                filename = known.filename if known is not None else MANIFEST_NAME
                framework = manifest["framework"]
                candidates.append(Candidate(name, resolved, filename, framework, probe, manifest))
        store = StoreArgs(
            self.root, self._signer.key, self._signer.require, self.limits, self._passed
        )
        files = run_trial(store, candidates, threads=threads)
        loaded = []
        for candidate, checked in zip(candidates, files, strict=True):
            with _boundary("model", candidate.name) as where:
                loaded.append(
                    self._load_model(candidate.name, candidate.version, where, threads, checked)
                )
        return loaded

    def _load_model(
        self,
        name: str,
        version: int | None,
        where: _Where,
        threads: int = 0,
        checked: Mapping[str, Any] | None = None,
    ) -> LoadedModel:
        version = self._models.resolve(name, version)
        where.at(version)
        parts = self._models.parts(name, version)
        manifest, signed = read_manifest(self._ctx, parts, name, version, kind="model")
        if checked is not None and manifest["files"] != checked:
            raise IntegrityError(
                name, version, MANIFEST_NAME, "its files changed since their trial load"
            )
        spec = check_model_fields(manifest, self.limits)
        contents = read_verified_files(self._ctx, parts, manifest, kind="model")
        fmt = FORMATS[manifest["framework"]]  # check_model_fields knows only these
        where.at(version, fmt.filename)
        model, predictor = fmt.load(
            manifest,
            _file(contents, fmt.filename, name, version),
            spec=spec,
            limits=self.limits,
            threads=threads,
        )
        return LoadedModel(manifest, model, predictor, signed=signed)

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
        return self._publish_fitted(
            self._strategies, "strategy", name, meta, arrays, fitted_on, promote
        )

    def strategies(self) -> list[str]:
        """Names of stored strategies."""
        with _boundary("strategy", "*"):
            return self._strategies.names()

    def strategy_versions(self, name: str) -> list[int]:
        """Complete versions of strategy ``name``, ascending."""
        with _boundary("strategy", name):
            return self._strategies.versions(name)

    def active_strategy_version(self, name: str) -> int:
        """The promoted version of strategy ``name`` (cheap pointer read)."""
        with _boundary("strategy", name):
            return self._strategies.active_version(name)

    def promote_strategy(self, name: str, version: int) -> None:
        """Make ``version`` the active version of strategy ``name``."""
        with _boundary("strategy", name):
            self._strategies.promote(name, version)

    def rollback_strategy(self, name: str) -> int:
        """Go back to the previously promoted strategy version and return it."""
        with _boundary("strategy", name):
            return self._strategies.rollback(name)

    def load_strategy(self, name: str, version: int | None = None) -> StoredStrategy:
        """Verify and load a strategy version (``None``: the promoted one).

        ``meta`` is plain JSON within the store's caps; nothing in it is interpreted here
        (``combiners.load_state`` resolves only registered names from it).
        """
        return StoredStrategy(*self._load_fitted(self._strategies, "strategy", name, version))

    def _load_fitted(
        self, directory: VersionedDir, kind: str, name: str, version: int | None
    ) -> tuple[Any, ...]:
        """``(name, version, meta, arrays, fitted_on, manifest, signed)`` of a verified
        meta-and-arrays artifact (a strategy or a reference profile)."""
        version = _version_arg(version)
        with _boundary(kind, name) as where:
            version = directory.resolve(name, version)
            where.at(version)
            parts = directory.parts(name, version)
            manifest, signed = read_manifest(self._ctx, parts, name, version, kind=kind)
            fitted_on = check_strategy_fields(manifest, kind=kind)
            contents = read_verified_files(
                self._ctx, parts, manifest, kind=kind, caps={_META_FILE: self.limits.max_json_bytes}
            )
            where.at(version, _META_FILE)
            meta_bytes = _file(contents, _META_FILE, name, version, kind=kind)
            try:
                meta = parse_json(
                    meta_bytes,
                    max_bytes=self.limits.max_json_bytes,
                    max_depth=self.limits.max_json_depth,
                )
            except Refused as exc:
                raise IntegrityError(name, version, _META_FILE, str(exc), kind=kind) from exc
            if not isinstance(meta, dict):
                raise IntegrityError(name, version, _META_FILE, "not an object", kind=kind)
            where.at(version, _ARRAYS_FILE)
            arrays = load_arrays(
                _file(contents, _ARRAYS_FILE, name, version, kind=kind),
                name=name,
                version=version,
                filename=_ARRAYS_FILE,
                kind=kind,
                limits=self.limits,
            )
            return name, version, meta, arrays, fitted_on, manifest, signed

    def _publish_fitted(
        self,
        directory: VersionedDir,
        kind: str,
        name: str,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        fitted_on: Mapping[str, int],
        promote: bool,
    ) -> int:
        check_name(name, kind=kind)
        try:
            meta_bytes = json.dumps(dict(meta), indent=1, sort_keys=True).encode()
        except (TypeError, ValueError) as exc:
            raise PublishError(name, f"meta is not JSON-serialisable: {exc}") from exc
        fitted: dict[str, int] = {}
        for model_name, model_version in fitted_on.items():
            fitted[model_name] = self._models.resolve(str(model_name), int(model_version))
        files = {_META_FILE: meta_bytes, _ARRAYS_FILE: dump_arrays(arrays, name=name)}
        return directory.publish(name, files, {"fitted_on": fitted}, promote=promote)

    # -- strategy decisions (champion/challenger) ---------------------------------------

    def publish_decision(
        self, name: str, record: Mapping[str, Any], *, expected: int | None
    ) -> int:
        """Record which strategy the workers of ``name`` serve, as a new promoted version,
        only if decision ``expected`` (None: no decision yet) is still in force; else
        :class:`~model_store.ConflictError` (another decider was first)."""
        with _boundary("decision", name):
            return self._decisions.publish(name, record, expected)

    def active_decision_version(self, name: str) -> int | None:
        """The version of the decision in force (cheap pointer read); None when none."""
        with _boundary("decision", name):
            return self._decisions.active_version(name)

    def load_decision(self, name: str, version: int | None = None) -> StoredDecision | None:
        """A verified decision (``None``: the one in force, or None when none was made)."""
        with _boundary("decision", name) as where:
            if version is None:
                return self._decisions.active(name)
            where.at(int(version))
            return self._decisions.load(name, int(version))

    def decision_history(self, name: str) -> list[StoredDecision]:
        """Every decision recorded under ``name``, oldest first."""
        with _boundary("decision", name):
            return self._decisions.history(name)

    def decisions(self) -> list[str]:
        with _boundary("decision", "*"):
            return self._decisions.dirs.names()

    # -- rollouts (model_store._rollouts) -----------------------------------------------

    def publish_rollout(self, name: str, record: Mapping[str, Any], *, expected: int | None) -> int:
        """Record a rollout's new state if state ``expected`` (None: none yet) is still in
        force; else :class:`~model_store.ConflictError` (another writer was first)."""
        with _boundary("rollout", name):
            return self._rollouts.publish(name, record, expected)

    def active_rollout_version(self, name: str) -> int | None:
        with _boundary("rollout", name):
            return self._rollouts.active_version(name)

    def load_rollout(self, name: str, version: int | None = None) -> StoredRollout | None:
        """A verified rollout state (``None``: the one in force, or None when none)."""
        with _boundary("rollout", name) as where:
            if version is None:
                return self._rollouts.active(name)
            where.at(int(version))
            return self._rollouts.load(name, int(version))

    def rollout_history(self, name: str) -> list[StoredRollout]:
        with _boundary("rollout", name):
            return self._rollouts.history(name)

    # -- held-out data sets -------------------------------------------------------------

    def publish_dataset(self, name: str, arrays: Mapping[str, np.ndarray]) -> int:
        """Store named arrays (e.g. ``X``, ``y`` of a held-out split) as a new version."""
        check_name(name, kind="dataset")
        files = {_ARRAYS_FILE: dump_arrays(arrays, name=name)}
        shapes = {k: list(np.shape(v)) for k, v in arrays.items()}
        return self._datasets.publish(name, files, {"shapes": shapes}, promote=False)

    def datasets(self) -> list[str]:
        """Names of stored data sets."""
        with _boundary("dataset", "*"):
            return self._datasets.names()

    def dataset_versions(self, name: str) -> list[int]:
        """Complete versions of data set ``name``, ascending."""
        with _boundary("dataset", name):
            return self._datasets.versions(name)

    def load_dataset(self, name: str, version: int | None = None) -> StoredDataset:
        """Verify and load a data set version (``None``: the latest)."""
        version = _version_arg(version)
        with _boundary("dataset", name) as where:
            if version is None:
                available = self._datasets.versions(name)
                if not available:
                    raise ModelNotFoundError(name, None, kind="dataset")
                version = available[-1]
            version = self._datasets.resolve(name, version)
            where.at(version)
            parts = self._datasets.parts(name, version)
            manifest, signed = read_manifest(self._ctx, parts, name, version, kind="dataset")
            contents = read_verified_files(self._ctx, parts, manifest, kind="dataset")
            where.at(version, _ARRAYS_FILE)
            arrays = load_arrays(
                _file(contents, _ARRAYS_FILE, name, version, kind="dataset"),
                name=name,
                version=version,
                filename=_ARRAYS_FILE,
                kind="dataset",
                limits=self.limits,
            )
            return StoredDataset(name, version, arrays, manifest, signed)

    # -- reference profiles (drift) ---------------------------------------------------

    def publish_profile(
        self,
        name: str,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        fitted_on: Mapping[str, int],
        *,
        promote: bool = True,
    ) -> int:
        """Store a reference profile (what the live features and outputs are compared with):
        opaque ``meta`` and ``arrays``, ``fitted_on`` the model versions whose outputs it
        describes; versioned, checksummed and signed like a strategy."""
        return self._publish_fitted(
            self._profiles, "profile", name, meta, arrays, fitted_on, promote
        )

    def profiles(self) -> list[str]:
        """Names of stored reference profiles."""
        with _boundary("profile", "*"):
            return self._profiles.names()

    def profile_versions(self, name: str) -> list[int]:
        """Complete versions of profile ``name``, ascending."""
        with _boundary("profile", name):
            return self._profiles.versions(name)

    def active_profile_version(self, name: str) -> int:
        """The promoted version of profile ``name`` (cheap pointer read)."""
        with _boundary("profile", name):
            return self._profiles.active_version(name)

    def load_profile(self, name: str, version: int | None = None) -> StoredProfile:
        """Verify and load a profile version (``None``: the promoted one)."""
        return StoredProfile(*self._load_fitted(self._profiles, "profile", name, version))


def _file(
    contents: Mapping[str, bytes], filename: str, name: str, version: int, *, kind: str = "model"
) -> bytes:
    try:
        return contents[filename]
    except KeyError as exc:
        raise IntegrityError(name, version, filename, "not in the manifest", kind=kind) from exc
