"""XGBoost, LightGBM and ONNX models: what to store at publish, and how to load them.

One path for both directions: publishing runs the same checks and the same loader as
:meth:`ModelStore.load` on the bytes about to be stored, then predicts a probe batch of zeros
of the declared width, so a version that is stored is a version that loads. Each framework's
package is imported only inside its loader; when it is missing the error says which extra to
install.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._fields import no_manifest_spec
from ._import import looks_pickled
from ._limits import StoreLimits
from ._publish import Predictor, checked_input_schema, jsonable_classes, no_spec
from .errors import PublishError, UnsafeModelError

__all__ = ["NativeCodec", "NativeFormat", "Opened", "describe_native", "load_native"]

_OUTPUT_KIND = {"classification": "proba", "regression": "value"}
#: What a codec's ``open`` returns: the bytes to store, the model, its predictor, the findings.
Opened = tuple[bytes, Any, Predictor, dict[str, Any]]


@dataclass(frozen=True)
class NativeCodec:
    """One format the store parses, checks and re-serialises (its module defines it).

    ``serialise`` turns a library model into its bytes and their spelling; ``open`` checks
    bytes of a spelling and loads them, returning the bytes to store, the model, its
    predictor and what the checks found (``n_features``, ``task``, ``n_outputs``,
    ``feature_names``, ``estimator``, and ``classes`` when the file states them). Bytes
    handed to publish are read as ``bytes_fmt``, a stored file as ``stored_fmt``.
    ``imported`` checks the bytes of a user's file (``store publish``) by its ending and
    returns what publish is handed. A user's file is imported from one of ``extensions``
    (``how_to_convert`` says how to write one); ``structure`` gives the trees and nodes, or
    operators, of stored bytes (``python -m model_store.check``).
    """

    name: str
    filename: str
    extensions: tuple[str, ...]
    how_to_convert: str
    libraries: tuple[str, ...]
    stored_fmt: str
    bytes_fmt: str
    serialise: Callable[[Any, str], tuple[bytes, str]]
    open: Callable[..., Opened]
    imported: Callable[..., bytes]
    structure: Callable[[bytes], dict[str, Any]]


def _as_bytes(codec: NativeCodec, model: Any, name: str) -> tuple[bytes, str]:
    """The serialised model and its spelling (``json``, ``ubj``, ``auto``, ``text``, ``onnx``)."""
    if isinstance(model, bytes | bytearray | memoryview):
        data = bytes(model)
        if looks_pickled(data):
            raise PublishError(name, "the bytes are a pickle, which the store never loads")
        return data, codec.bytes_fmt
    return codec.serialise(model, name)


def _probe(predict: Predictor, n_features: int) -> np.ndarray:
    out = np.asarray(predict(np.zeros((2, n_features))))
    if out.ndim != 2 or out.shape[0] != 2 or not np.isfinite(out).all():
        raise ValueError(f"a probe batch of zeros gave shape {out.shape} or non-finite values")
    return out


def describe_native(
    codec: NativeCodec,
    name: str,
    model: Any,
    *,
    input_schema: Mapping[str, Any] | None,
    task: str | None,
    classes: Sequence[Any] | None,
    output_kind: str | None,
    tasks: Sequence[Mapping[str, Any]] | None,
    limits: StoreLimits,
    source: str | None = None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Files and manifest fields for an XGBoost, LightGBM or ONNX model (or its bytes).

    ``source`` is the name of the user's file (:meth:`ModelStore.publish_file`), which
    refusals name. An ONNX classifier's classes are the labels its file states
    (:func:`model_store._onnx_io.class_columns`): given ``classes`` must be the same labels;
    in another order, the columns are served in the given order and a logged warning says so.
    XGBoost and LightGBM files hold no labels: their classes are the given ones, or
    ``0..n-1``.
    """
    if tasks is not None or task not in (None, "classification", "regression"):
        raise PublishError(
            name, f"{codec.name} models are single-task (classification or regression)"
        )
    data, fmt = _as_bytes(codec, model, name)
    declared = dict(input_schema or {})
    given_classes = None if classes is None else jsonable_classes(name, classes)
    stored, _, predict, found = codec.open(
        data,
        fmt,
        name=name,
        version=None,
        filename=source or codec.filename,
        limits=limits,
        threads=1,
        n_features=declared.get("n_features"),
        task=task,
        classes=given_classes,
    )
    if task is not None and task != found["task"]:
        raise PublishError(name, f"task {task!r}, but the model's objective is {found['task']}")
    task = found["task"]
    schema = checked_input_schema(name, declared, found["n_features"], found["feature_names"])
    try:
        out = _probe(predict, schema["n_features"])
    except Exception as exc:
        raise PublishError(name, f"model fails on a probe batch of zeros: {exc}") from exc
    n_outputs = int(out.shape[1])
    final: list[Any] | None = None
    if task == "classification":
        from ._onnx_io import served_classes

        final = served_classes(name, given_classes, found.get("classes"), source)
        final = final or list(range(n_outputs))
        if len(final) != n_outputs:
            raise PublishError(name, f"{len(final)} classes for {n_outputs} probability columns")
    elif classes is not None:
        raise PublishError(name, "a regression model has no classes")
    expected = _OUTPUT_KIND[task]
    if output_kind not in (None, expected):
        raise PublishError(name, f"output_kind {output_kind!r} does not fit task {task!r}")
    fields = {
        "framework": codec.name,
        "input_schema": schema,
        "task": task,
        "classes": final,
        "tasks": None,
        "n_outputs": n_outputs,
        "output_kind": expected,
        "estimator": found["estimator"],
        "spec": None,
    }
    return {codec.filename: stored}, fields


def load_native(
    codec: NativeCodec,
    manifest: Mapping[str, Any],
    data: bytes,
    *,
    limits: StoreLimits,
    threads: int,
) -> tuple[Any, Predictor]:
    """Check and load a stored native model; its outputs must fit the manifest."""
    name, version = manifest["name"], manifest["version"]
    n_features = manifest["input_schema"]["n_features"]
    filename = codec.filename
    _, model, predict, found = codec.open(
        data,
        codec.stored_fmt,
        name=name,
        version=version,
        filename=filename,
        limits=limits,
        threads=threads,
        n_features=n_features,
        task=manifest["task"],
        classes=manifest["classes"],
    )
    if found["n_features"] != n_features or found["task"] != manifest["task"]:
        raise UnsafeModelError(
            name,
            version,
            filename,
            reason=f"the model is a {found['task']} model of {found['n_features']} features, "
            f"the manifest says {manifest['task']} of {n_features}",
        )
    labels = found.get("classes")
    if labels is not None and manifest["classes"] is not None:
        from ._onnx_io import class_columns

        if class_columns(labels, manifest["classes"]) is None:
            raise UnsafeModelError(
                name,
                version,
                filename,
                reason=f"the file states the classes {labels}, the manifest "
                f"{manifest['classes']}: publish the file again",
            )
    out = _probe(predict, n_features)
    if out.shape[1] != manifest["n_outputs"]:
        raise UnsafeModelError(
            name,
            version,
            filename,
            reason=f"the model has {out.shape[1]} outputs, the manifest {manifest['n_outputs']}",
        )
    return model, predict


@dataclass(frozen=True)
class NativeFormat:
    """XGBoost, LightGBM and ONNX: parsed, checked and re-serialised by the store, each by
    the codec its own module defines."""

    codec: NativeCodec
    tasks: tuple[str, ...] = ("classification", "regression")

    @property
    def name(self) -> str:
        return self.codec.name

    @property
    def filename(self) -> str:
        return self.codec.filename

    @property
    def extensions(self) -> tuple[str, ...]:
        return self.codec.extensions

    @property
    def how_to_convert(self) -> str:
        return self.codec.how_to_convert

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
        no_spec(name, spec)
        return describe_native(
            self.codec, name, model, limits=limits, source=source, **describe_args
        )

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

    def structure(self, data: bytes) -> dict[str, Any]:
        return self.codec.structure(data)
