"""The served model set: load from the store, check that the models agree, hot-reload promotions.

Every model must take the same input (feature count and names) and produce the same output
layout (task, classes, number of outputs), or the combiners could not line their outputs up;
a model set that disagrees is refused at start-up, and a promoted version that would break the
agreement is refused at reload while the old version keeps serving.
"""

from __future__ import annotations

import copy
import difflib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from model_store import LoadedModel, ModelStore, ModelStoreError
from worker.batch.decode import Schema
from worker.batch.layout import OutputLayout
from worker.config import ModelRef
from worker.errors import ConfigError
from worker.inference.warm import check_published

__all__ = ["ModelSet", "PredictFn", "Promotion", "check_names"]

log = logging.getLogger("streamfuse.models")

#: One model's predict: features ``(n, n_features)`` to outputs ``(n, n_outputs)``.
PredictFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Promotion:
    model: str
    old_version: int
    new_version: int


def check_names(store: ModelStore, refs: Sequence[ModelRef]) -> None:
    """Every configured model and pinned version is in the store, else a :class:`ConfigError`
    with the closest name: read from the store's listing, before any model loads (seconds)."""
    known = sorted(store.models())
    for i, ref in enumerate(refs):
        if ref.name not in known:
            hint = difflib.get_close_matches(ref.name, known, n=1)
            raise ConfigError(
                f"models.{i}.name",
                f"no model named {ref.name!r} in the store {store.root}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (known: {', '.join(known) or 'none'})",
            )
        if ref.version is None:
            continue
        try:
            versions = store.versions(ref.name)
        except ModelStoreError as exc:
            raise ConfigError(f"models.{i}.version", f"{exc}") from exc
        if ref.version not in versions:
            raise ConfigError(
                f"models.{i}.version",
                f"{ref.name!r} has no version {ref.version} in the store "
                f"(stored: {', '.join(map(str, versions))})",
            )


class ModelSet:
    """The models of one worker, in config order."""

    def __init__(self, store: ModelStore, refs: Sequence[ModelRef], threads: int = 0) -> None:
        self.store = store
        self.threads = threads  # XGBoost, LightGBM and ONNX take it at load
        self.refs = list(refs)
        self.names = [r.name for r in refs]
        self.models: list[LoadedModel] = []
        check_names(store, self.refs)
        # Each model is first loaded and probed in a child process within store.limits: a
        # file that hangs, allocates without bound or crashes stops start-up, naming the file
        # and the limit, instead of hanging or killing this process.
        try:
            self.models = store.load_bounded(
                [(ref.name, ref.version, None) for ref in refs], threads=threads
            )
        except ModelStoreError as exc:
            name = getattr(exc, "name", None)
            raise ConfigError("models", f"cannot load {name!r}: {exc}") from exc
        for ref, model in zip(refs, self.models, strict=True):
            try:  # as a hot-reloaded version is (a library upgrade changes what a file answers)
                check_published(model)
            except ValueError as exc:
                raise ConfigError("models", f"{ref.name!r} version {model.version}: {exc}") from exc
        first = self.models[0]
        for model in self.models[1:]:
            problem = _disagreement(first, model)
            if problem:
                raise ConfigError(
                    "models", f"{model.name!r} does not match {first.name!r}: {problem}"
                )
        self.schema = Schema(
            first.n_features, tuple(first.feature_names) if first.feature_names else None
        )
        self.layout = OutputLayout.from_manifest(first.manifest, first.n_outputs)

    @property
    def versions(self) -> dict[str, int]:
        return {m.name: m.version for m in self.models}

    @property
    def predict_fns(self) -> list[PredictFn]:
        return [m.predict_outputs for m in self.models]

    def pending_promotions(self) -> list[Promotion]:
        """Models not pinned in config whose promoted version differs from the served one."""
        found = []
        for ref, model in zip(self.refs, self.models, strict=True):
            if ref.version is not None:
                continue
            try:
                active = self.store.active_version(ref.name)
            except ModelStoreError as exc:
                log.warning("cannot read the promoted version of %s: %s", ref.name, exc)
                continue
            if active != model.version:
                found.append(Promotion(ref.name, model.version, active))
        return found

    def load_candidate(self, promotion: Promotion, probe: np.ndarray) -> LoadedModel:
        """Load the promoted version and check it on ``probe`` without serving it yet.

        The load and a first prediction of ``probe`` are tried in a child process within
        ``store.limits`` first (:meth:`ModelStore.load_bounded`): a candidate that hangs,
        allocates without bound or crashes is refused there, never in this process.

        Raises
        ------
        ModelStoreError
            The version cannot be loaded (missing, tampered with, unsafe, past a limit).
        ValueError
            It disagrees with the served set, its probe output is wrong, or it answers
            otherwise than at publish on the rows recorded then (:func:`check_published`).
        """
        (candidate,) = self.store.load_bounded(
            [(promotion.model, promotion.new_version, probe)], threads=self.threads
        )
        index = self.names.index(promotion.model)
        problem = _disagreement(self.models[index], candidate)
        if problem:
            raise ValueError(problem)
        out = candidate.predict_outputs(probe)
        if (
            out.shape != (probe.shape[0], self.layout.n_outputs)
            or out.dtype.kind not in "fiu"
            or not np.isfinite(out).all()
        ):
            raise ValueError(f"probe batch gave shape {out.shape} or non-finite values")
        check_published(candidate)
        return candidate

    def replaced(self, candidate: LoadedModel) -> ModelSet:
        """A new model set with ``candidate`` in place of the model of the same name; this one
        is left as it is (a batch that started with it finishes with it)."""
        index = self.names.index(candidate.name)
        new = copy.copy(self)
        new.models = [*self.models[:index], candidate, *self.models[index + 1 :]]
        return new


def _disagreement(a: LoadedModel, b: LoadedModel) -> str | None:
    if a.n_features != b.n_features:
        return f"takes {b.n_features} features, not {a.n_features}"
    if (a.feature_names or None) != (b.feature_names or None):
        return "its feature names differ"
    if a.task != b.task:
        return f"its task is {b.task}, not {a.task}"
    if a.n_outputs != b.n_outputs:
        return f"it has {b.n_outputs} outputs, not {a.n_outputs}"
    if _plain(a.classes) != _plain(b.classes):
        return f"its classes {b.classes} differ from {a.classes}"
    if a.task == "multitask" and _tasks(a) != _tasks(b):
        return "its tasks differ"
    return None


def _plain(classes: Sequence[object] | None) -> list[str] | None:
    return None if classes is None else [str(c) for c in classes]


def _tasks(model: LoadedModel) -> list[tuple[str, str, int]]:
    return [(t["name"], t["type"], int(t["n_outputs"])) for t in model.tasks or []]
