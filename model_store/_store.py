"""The :class:`ModelStore` facade: models, fitted strategies and held-out data sets.

Each kind of artifact is one :class:`~._artifacts.ArtifactKind` (decisions and rollouts one
:class:`~._records.RecordLog` over it): the facade only names the kinds and keeps the public
methods' names and documentation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ._arrays_io import dump_arrays
from ._artifacts import ArtifactKind, Found, boundary
from ._decisions import DecisionLog, StoredDecision
from ._fields import check_model_fields, check_strategy_fields
from ._formats import FORMATS, format_for
from ._limits import StoreLimits
from ._loaded import LoadedModel, StoredDataset, StoredProfile, StoredStrategy
from ._manifest import MANIFEST_NAME, ReadContext
from ._passed import PassedTrials
from ._publish import jsonable_scores
from ._published import OUTPUTS_FILE, published_outputs
from ._rollouts import RolloutLog, StoredRollout
from ._signing import Signer
from ._trial import Candidate, StoreArgs, run_trial
from ._versions import VersionedDir, check_name
from .errors import PublishError, SigningKeyError, StoreLayoutError

__all__ = ["FILE_ENDINGS", "FRAMEWORKS", "ModelStore"]

FRAMEWORKS = tuple(FORMATS)
#: The endings of the files ``store publish`` imports, by framework.
FILE_ENDINGS = {name: fmt.extensions for name, fmt in FORMATS.items()}
T = TypeVar("T")

STRATEGIES_DIR = "_strategies"
DATASETS_DIR = "_datasets"
PROFILES_DIR = "_profiles"
_META_FILE = "meta.json"
_ARRAYS_FILE = "arrays.npz"


def _model(found: Found) -> LoadedModel:
    fmt = FORMATS[found.manifest["framework"]]  # check_model_fields knows only these
    model, predictor = fmt.load(
        found.manifest,
        found.file(fmt.filename),
        spec=found.fields,
        limits=found.limits,
        threads=found.threads,
    )
    published = found.arrays(OUTPUTS_FILE) if OUTPUTS_FILE in found.manifest["files"] else None
    return LoadedModel(found.manifest, model, predictor, signed=found.signed, published=published)


def _meta_and_arrays(found: Found) -> tuple[Any, ...]:
    """``(name, version, meta, arrays, fitted_on, manifest, signed)`` of a verified
    meta-and-arrays artifact (a strategy or a reference profile)."""
    meta = found.json(_META_FILE)
    if not isinstance(meta, dict):
        raise found.refuse(_META_FILE, "not an object")
    arrays = found.arrays(_ARRAYS_FILE)
    return found.name, found.version, meta, arrays, found.fields, found.manifest, found.signed


def _strategy(found: Found) -> StoredStrategy:
    return StoredStrategy(*_meta_and_arrays(found))


def _profile(found: Found) -> StoredProfile:
    return StoredProfile(*_meta_and_arrays(found))


def _dataset(found: Found) -> StoredDataset:
    arrays = found.arrays(_ARRAYS_FILE)
    return StoredDataset(found.name, found.version, arrays, found.manifest, found.signed)


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

        root/<model>/<version>/{manifest.json, model.skops | model.safetensors | ...,
                                published_outputs.npz}   rows and the outputs at publish
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
        self._models = ArtifactKind(
            ctx, "model", (), _model, check=partial(check_model_fields, limits=self.limits)
        )

        def fitted(kind: str, directory: str, loader: Callable[[Found], T]) -> ArtifactKind[T]:
            check = partial(check_strategy_fields, kind=kind)
            return ArtifactKind(
                ctx, kind, (directory,), loader, check=check, json_files=(_META_FILE,)
            )

        self._strategies = fitted("strategy", STRATEGIES_DIR, _strategy)
        self._profiles = fitted("profile", PROFILES_DIR, _profile)
        self._datasets = ArtifactKind(
            ctx, "dataset", (DATASETS_DIR,), _dataset, latest_by_default=True
        )
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
        kinds = (self._models, self._strategies, self._datasets, self._profiles)
        with boundary("artifact", "*"):
            for dirs in [k.dir for k in kinds] + [self._decisions.dirs, self._rollouts.dirs]:
                directory = VersionedDir(ctx, dirs.collection, dirs.kind)
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
        fmt = format_for(framework, name)
        files, fields = fmt.describe(
            name, model, spec=spec, limits=self.limits, source=source, describe_args=describe_args
        )
        fields["scores"] = jsonable_scores(name, scores)
        # what it answers now, loaded as a worker loads it: compared when a worker loads it
        files[OUTPUTS_FILE] = published_outputs(fmt, name, files, fields, self.limits)
        return self._models.dir.publish(name, files, fields, promote=promote)

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
        """The manifest of a version (``None``: the promoted one), without checking files.

        Its signature is verified (when the store has a key); ``"signed"`` says whether it
        was signed.
        """
        _, manifest, signed = self._models.manifest(name, version)
        return {**manifest, "signed": signed}

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
        return self._models.load(name, version, threads=threads)

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
            resolved, manifest, signed = self._models.manifest(name, version)
            with self._models.boundary(name) as where:
                where.at(resolved)
                known = FORMATS.get(manifest["framework"])
                filename = known.filename if known is not None else MANIFEST_NAME
                framework = manifest["framework"]
                seen = {**manifest, "signed": signed}
                candidates.append(Candidate(name, resolved, filename, framework, probe, seen))
        store = StoreArgs(
            self.root, self._signer.key, self._signer.require, self.limits, self._passed
        )
        files = run_trial(store, candidates, threads=threads)
        return [
            self._models.load(c.name, c.version, threads=threads, checked=checked)
            for c, checked in zip(candidates, files, strict=True)
        ]

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
        return self._publish_fitted(self._strategies, name, meta, arrays, fitted_on, promote)

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
        """Verify and load a strategy version (``None``: the promoted one).

        ``meta`` is plain JSON within the store's caps; nothing in it is interpreted here
        (``combiners.load_state`` resolves only registered names from it).
        """
        return self._strategies.load(name, version)

    def _publish_fitted(
        self,
        kind: ArtifactKind[Any],
        name: str,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        fitted_on: Mapping[str, int],
        promote: bool,
    ) -> int:
        check_name(name, kind=kind.kind)
        try:
            meta_bytes = json.dumps(dict(meta), indent=1, sort_keys=True).encode()
        except (TypeError, ValueError) as exc:
            raise PublishError(name, f"meta is not JSON-serialisable: {exc}") from exc
        fitted: dict[str, int] = {}
        for model_name, model_version in fitted_on.items():
            fitted[model_name] = self._models.dir.resolve(str(model_name), int(model_version))
        files = {_META_FILE: meta_bytes, _ARRAYS_FILE: dump_arrays(arrays, name=name)}
        return kind.dir.publish(name, files, {"fitted_on": fitted}, promote=promote)

    # -- strategy decisions (champion/challenger) ---------------------------------------

    def publish_decision(
        self, name: str, record: Mapping[str, Any], *, expected: int | None
    ) -> int:
        """Record which strategy the workers of ``name`` serve, as a new promoted version,
        only if decision ``expected`` (None: no decision yet) is still in force; else
        :class:`~model_store.ConflictError` (another decider was first)."""
        return self._decisions.publish(name, record, expected)

    def active_decision_version(self, name: str) -> int | None:
        """The version of the decision in force (cheap pointer read); None when none."""
        return self._decisions.active_version(name)

    def load_decision(self, name: str, version: int | None = None) -> StoredDecision | None:
        """A verified decision (``None``: the one in force, or None when none was made)."""
        return self._decisions.load(name, version)

    def decision_history(self, name: str) -> list[StoredDecision]:
        """Every decision recorded under ``name``, oldest first."""
        return self._decisions.history(name)

    def decisions(self) -> list[str]:
        return self._decisions.names()

    # -- rollouts (model_store._rollouts) -----------------------------------------------

    def publish_rollout(self, name: str, record: Mapping[str, Any], *, expected: int | None) -> int:
        """Record a rollout's new state if state ``expected`` (None: none yet) is still in
        force; else :class:`~model_store.ConflictError` (another writer was first)."""
        return self._rollouts.publish(name, record, expected)

    def active_rollout_version(self, name: str) -> int | None:
        return self._rollouts.active_version(name)

    def load_rollout(self, name: str, version: int | None = None) -> StoredRollout | None:
        """A verified rollout state (``None``: the one in force, or None when none)."""
        return self._rollouts.load(name, version)

    def rollout_history(self, name: str) -> list[StoredRollout]:
        return self._rollouts.history(name)

    # -- held-out data sets -------------------------------------------------------------

    def publish_dataset(self, name: str, arrays: Mapping[str, np.ndarray]) -> int:
        """Store named arrays (e.g. ``X``, ``y`` of a held-out split) as a new version."""
        check_name(name, kind="dataset")
        files = {_ARRAYS_FILE: dump_arrays(arrays, name=name)}
        shapes = {k: list(np.shape(v)) for k, v in arrays.items()}
        return self._datasets.dir.publish(name, files, {"shapes": shapes}, promote=False)

    def datasets(self) -> list[str]:
        """Names of stored data sets."""
        return self._datasets.names()

    def dataset_versions(self, name: str) -> list[int]:
        """Complete versions of data set ``name``, ascending."""
        return self._datasets.versions(name)

    def load_dataset(self, name: str, version: int | None = None) -> StoredDataset:
        """Verify and load a data set version (``None``: the latest)."""
        return self._datasets.load(name, version)

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
        return self._publish_fitted(self._profiles, name, meta, arrays, fitted_on, promote)

    def profiles(self) -> list[str]:
        """Names of stored reference profiles."""
        return self._profiles.names()

    def profile_versions(self, name: str) -> list[int]:
        """Complete versions of profile ``name``, ascending."""
        return self._profiles.versions(name)

    def active_profile_version(self, name: str) -> int:
        """The promoted version of profile ``name`` (cheap pointer read)."""
        return self._profiles.active_version(name)

    def load_profile(self, name: str, version: int | None = None) -> StoredProfile:
        """Verify and load a profile version (``None``: the promoted one)."""
        return self._profiles.load(name, version)
