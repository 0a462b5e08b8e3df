"""The :class:`Format` protocol, and the registry of one format per framework.

A format knows its framework name, the file it is stored as, the file endings it is
imported from, the libraries a trial-load child imports ahead of time, the tasks it serves,
how to describe a model at publish (checks, files, manifest fields), how to check its
manifest's spec and how to load a stored one (checks, model, predictor). Each is defined in
its own module; the store compares no framework names: adding one means a module and a line
here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from . import _sklearn_format, _torch_format
from ._lightgbm_io import CODEC as LIGHTGBM
from ._limits import StoreLimits
from ._native import NativeFormat
from ._onnx_io import CODEC as ONNX
from ._publish import Predictor
from ._xgboost_io import CODEC as XGBOOST
from .errors import PublishError

__all__ = ["FORMATS", "Format", "format_for", "libraries_of"]


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
    def how_to_convert(self) -> str:
        """How a user writes a file of one of :attr:`extensions` (named on a refusal)."""
        ...

    @property
    def libraries(self) -> tuple[str, ...]:
        """What a trial-load child imports ahead of the load."""
        ...

    @property
    def tasks(self) -> tuple[str, ...]:
        """The manifest tasks a model of this format may have."""
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

    def manifest_spec(
        self, manifest: Mapping[str, Any], limits: StoreLimits
    ) -> dict[str, Any] | None:
        """The manifest's ``spec`` validated against its other fields (``None`` for a
        format without one, whose manifest must carry none): an ``IntegrityError``
        otherwise."""
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

    def structure(self, data: bytes) -> dict[str, Any]:
        """What ``python -m model_store.check`` reports of stored bytes beyond the
        manifest: trees and nodes, or operators (``{}`` when nothing more)."""
        ...


#: Every format the store reads and writes, by framework name.
_ALL: tuple[Format, ...] = (
    _sklearn_format.FORMAT,
    _torch_format.FORMAT,
    *(NativeFormat(codec) for codec in (XGBOOST, LIGHTGBM, ONNX)),
)
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
