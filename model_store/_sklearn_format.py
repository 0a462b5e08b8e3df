"""The scikit-learn format: a skops archive, loaded under the store's trusted types.

Publish re-serialises the fitted estimator (:func:`model_store._sklearn_io.dump_sklearn`);
a user's ``.skops`` file is loaded under the allowlist first. Loading checks the archive's
types and trees before skops sees it, then the classes against the manifest.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._fields import no_manifest_spec
from ._limits import StoreLimits
from ._manifest import MANIFEST_NAME
from ._publish import (
    Predictor,
    checked_input_schema,
    checked_output_kind,
    jsonable_classes,
    no_spec,
)
from ._sklearn_io import dump_sklearn, load_sklearn, make_sklearn_predictor
from .errors import IntegrityError, PublishError

__all__ = ["FORMAT", "SKLEARN_FILE", "describe_sklearn"]

SKLEARN_FILE = "model.skops"


def describe_sklearn(
    name: str,
    model: Any,
    *,
    input_schema: Mapping[str, Any] | None,
    task: str | None,
    classes: Sequence[Any] | None,
    output_kind: str | None,
    tasks: Sequence[Mapping[str, Any]] | None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Files and manifest fields for a fitted scikit-learn estimator."""
    is_classifier = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    task = task or ("classification" if is_classifier else "regression")
    if task not in ("classification", "regression") or tasks is not None:
        raise PublishError(name, "scikit-learn models are single-task (use a torch multitask_mlp)")
    if task == "classification" and not is_classifier:
        raise PublishError(name, "task 'classification' needs predict_proba and classes_")
    names_in = getattr(model, "feature_names_in_", None)
    schema = checked_input_schema(
        name,
        input_schema,
        getattr(model, "n_features_in_", None),
        None if names_in is None else list(names_in),
    )
    probe = np.zeros((1, schema["n_features"]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. fitted with feature names, probed without
            out = model.predict_proba(probe) if is_classifier else model.predict(probe)
    except Exception as exc:
        raise PublishError(name, f"model fails on a probe batch of zeros: {exc}") from exc
    out = np.asarray(out)
    if task == "classification":
        model_classes = jsonable_classes(name, list(model.classes_))
        final = model_classes if classes is None else jsonable_classes(name, classes)
        if sorted(map(repr, final)) != sorted(map(repr, model_classes)):
            raise PublishError(name, f"classes {final} are not the model's {model_classes}")
        n_outputs = len(final)
    else:
        if classes is not None:
            raise PublishError(name, "a regression model has no classes")
        final = None
        n_outputs = 1 if out.ndim == 1 else int(out.shape[1])
    fields = {
        "framework": "sklearn",
        "input_schema": schema,
        "task": task,
        "classes": final,
        "tasks": None,
        "n_outputs": n_outputs,
        "output_kind": checked_output_kind(name, task, output_kind),
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "spec": None,
    }
    return {SKLEARN_FILE: dump_sklearn(model, name=name)}, fields


def _checked_classes(manifest: Mapping[str, Any], estimator: Any) -> list[Any] | None:
    if manifest["task"] != "classification":
        return None
    name, version = manifest["name"], manifest["version"]
    own = getattr(estimator, "classes_", None)
    if own is None:
        raise IntegrityError(name, version, SKLEARN_FILE, "the classifier has no classes_")
    own_list = np.asarray(own).tolist()
    classes = manifest["classes"]
    if not isinstance(own_list, list) or sorted(map(repr, classes)) != sorted(map(repr, own_list)):
        raise IntegrityError(name, version, MANIFEST_NAME, "classes do not match the model")
    return list(classes)


@dataclass(frozen=True)
class SklearnFormat:
    """scikit-learn estimators (see the module docstring)."""

    name: str = "sklearn"
    filename: str = SKLEARN_FILE
    extensions: tuple[str, ...] = (".skops",)
    how_to_convert: str = "skops.io.dump(model, 'model.skops')"
    libraries: tuple[str, ...] = ("sklearn", "skops.io")
    tasks: tuple[str, ...] = ("classification", "regression")

    def describe(
        self,
        name: str,
        model: Any,
        *,
        spec: Mapping[str, Any] | None,
        limits: StoreLimits,
        source: str | None,
        describe_args: Mapping[str, Any],
    ) -> tuple[dict[str, bytes], dict[str, Any]]:
        no_spec(name, spec)
        return describe_sklearn(name, model, **describe_args)

    def manifest_spec(
        self, manifest: Mapping[str, Any], limits: StoreLimits
    ) -> dict[str, Any] | None:
        no_manifest_spec(manifest)
        return None

    def load(
        self,
        manifest: Mapping[str, Any],
        data: bytes,
        *,
        spec: Mapping[str, Any] | None,
        limits: StoreLimits,
        threads: int,
    ) -> tuple[Any, Predictor]:
        estimator = load_sklearn(
            data,
            name=manifest["name"],
            version=manifest["version"],
            filename=self.filename,
            limits=limits,
            n_features=manifest["input_schema"]["n_features"],
        )
        predictor = make_sklearn_predictor(
            estimator,
            task=manifest["task"],
            classes=_checked_classes(manifest, estimator),
            n_outputs=manifest["n_outputs"],
        )
        return estimator, predictor

    def read_import(
        self,
        data: bytes,
        *,
        suffix: str,
        filename: str,
        name: str,
        limits: StoreLimits,
        spec_path: str | os.PathLike[str] | None,
    ) -> tuple[Any, dict[str, Any] | None]:
        return load_sklearn(data, name=name, version=None, filename=filename, limits=limits), None

    def structure(self, data: bytes) -> dict[str, Any]:
        return {}


FORMAT = SklearnFormat()
