"""One :class:`Format` per framework, and the registry the store dispatches on.

A format knows its framework name, the file it is stored as, the file endings it is
imported from, the libraries a trial-load child imports ahead of time, how to describe a
model at publish (checks, files, manifest fields) and how to load a stored one (checks,
model, predictor). The store compares no framework names: adding one means a format here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ._import import EXTENSIONS, read_torch
from ._lightgbm_io import CODEC as LIGHTGBM
from ._limits import StoreLimits
from ._manifest import MANIFEST_NAME
from ._native import NativeCodec, describe_native, load_native
from ._onnx_io import CODEC as ONNX
from ._publish import SKLEARN_FILE, TORCH_FILE, describe_sklearn, describe_torch
from ._sklearn_io import load_sklearn, make_sklearn_predictor
from ._xgboost_io import CODEC as XGBOOST
from .errors import IntegrityError, PublishError

__all__ = ["FORMATS", "Format", "format_for"]

Predictor = Callable[[np.ndarray], np.ndarray]


class Format(Protocol):
    """What the store needs to know of a framework."""

    @property
    def name(self) -> str:
        """The framework's name in manifests and on the command line."""
        ...

    @property
    def filename(self) -> str:
        """The file a version stores the model in."""
        ...

    @property
    def extensions(self) -> tuple[str, ...]:
        """The endings of the files ``store publish`` imports."""
        ...

    @property
    def libraries(self) -> tuple[str, ...]:
        """What a trial-load child imports ahead of the load."""
        ...

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
        """The files and manifest fields of ``model``, checked as a load would check them."""
        ...

    def load(
        self,
        manifest: Mapping[str, Any],
        data: bytes,
        *,
        spec: Mapping[str, Any] | None,
        limits: StoreLimits,
        threads: int,
    ) -> tuple[Any, Predictor]:
        """The model and its predictor, from the verified bytes of :attr:`filename`."""
        ...

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
        """What publish is handed for the bytes of the user's file ``filename`` (``store
        publish``), checked by its ending ``suffix``: ``(model, spec)``."""
        ...


def _no_spec(name: str, spec: Mapping[str, Any] | None) -> None:
    if spec is not None:
        raise PublishError(name, "spec is for torch models only")


@dataclass(frozen=True)
class _Sklearn:
    name: str = "sklearn"
    filename: str = SKLEARN_FILE
    extensions: tuple[str, ...] = EXTENSIONS["sklearn"]
    libraries: tuple[str, ...] = ("sklearn", "skops.io")

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
        _no_spec(name, spec)
        return describe_sklearn(name, model, **describe_args)

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
class _Torch:
    name: str = "torch"
    filename: str = TORCH_FILE
    extensions: tuple[str, ...] = EXTENSIONS["torch"]
    libraries: tuple[str, ...] = ("torch", "safetensors")

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
        return describe_torch(name, model, spec=spec, limits=limits, **describe_args)

    def load(
        self,
        manifest: Mapping[str, Any],
        data: bytes,
        *,
        spec: Mapping[str, Any] | None,
        limits: StoreLimits,
        threads: int,
    ) -> tuple[Any, Predictor]:
        name, version = manifest["name"], manifest["version"]
        if spec is None:  # check_model_fields returns a spec for every torch manifest
            raise IntegrityError(name, version, MANIFEST_NAME, "torch model without a spec")
        from ._torch_io import load_torch, make_torch_predictor  # torch only when needed

        module = load_torch(data, spec, name=name, version=version, filename=self.filename)
        return module, make_torch_predictor(module, spec)

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
        return read_torch(data, spec_path, name=name, filename=filename, limits=limits)


@dataclass(frozen=True)
class _Native:
    """XGBoost, LightGBM and ONNX: parsed, checked and re-serialised by the store, each by
    the codec its own module defines."""

    codec: NativeCodec

    @property
    def name(self) -> str:
        return self.codec.name

    @property
    def filename(self) -> str:
        return self.codec.filename

    @property
    def extensions(self) -> tuple[str, ...]:
        return EXTENSIONS[self.codec.name]

    @property
    def libraries(self) -> tuple[str, ...]:
        return self.codec.libraries

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
        _no_spec(name, spec)
        return describe_native(
            self.codec, name, model, limits=limits, source=source, **describe_args
        )

    def load(
        self,
        manifest: Mapping[str, Any],
        data: bytes,
        *,
        spec: Mapping[str, Any] | None,
        limits: StoreLimits,
        threads: int,
    ) -> tuple[Any, Predictor]:
        return load_native(self.codec, manifest, data, limits=limits, threads=threads)

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
        imported = self.codec.imported(
            data, suffix=suffix, name=name, filename=filename, limits=limits
        )
        return imported, None


#: Every format the store reads and writes, by framework name.
_ALL: tuple[Format, ...] = (_Sklearn(), _Torch(), *(_Native(c) for c in (XGBOOST, LIGHTGBM, ONNX)))
FORMATS: dict[str, Format] = {f.name: f for f in _ALL}


def format_for(framework: str, name: str) -> Format:
    """The format of ``framework``, else a :class:`PublishError` listing the known ones."""
    try:
        return FORMATS[framework]
    except (KeyError, TypeError):
        raise PublishError(
            name, f"framework must be one of {', '.join(FORMATS)}, got {framework!r}"
        ) from None


def libraries_of(frameworks: Sequence[str]) -> tuple[str, ...]:
    """The libraries to import ahead of loading models of ``frameworks``."""
    found = {lib for f in frameworks if f in FORMATS for lib in FORMATS[f].libraries}
    return tuple(sorted(found))
