"""XGBoost, LightGBM and ONNX models: what to store at publish, and how to load them.

One path for both directions: publishing runs the same checks and the same loader as
:meth:`ModelStore.load` on the bytes about to be stored, then predicts a probe batch of zeros
of the declared width, so a version that is stored is a version that loads. Each framework's
package is imported only inside its loader; when it is missing the error says which extra to
install.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._limits import StoreLimits
from ._refused import Refused
from .errors import PublishError, UnsafeModelError

__all__ = ["NATIVE_FILES", "NATIVE_FRAMEWORKS", "describe_native", "load_native"]

NATIVE_FRAMEWORKS = ("xgboost", "lightgbm", "onnx")
NATIVE_FILES = {"xgboost": "model.json", "lightgbm": "model.txt", "onnx": "model.onnx"}
_OUTPUT_KIND = {"classification": "proba", "regression": "value"}
_PICKLE = re.compile(rb"\x80[\x02-\x05]")

Predictor = Callable[[np.ndarray], np.ndarray]


def _as_bytes(framework: str, model: Any, name: str) -> tuple[bytes, str]:
    """The serialised model and its format (``json``, ``ubj``, ``auto``, ``text``, ``onnx``)."""
    if isinstance(model, bytes | bytearray | memoryview):
        data = bytes(model)
        if _PICKLE.match(data[:2]):
            raise PublishError(name, "the bytes are a pickle, which the store never loads")
        return data, "auto" if framework == "xgboost" else framework
    if framework == "xgboost":
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        if not hasattr(booster, "save_raw"):
            raise PublishError(name, f"not an XGBoost model: {type(model).__name__}")
        return bytes(booster.save_raw("json")), "json"
    if framework == "lightgbm":
        if isinstance(model, str):
            return model.encode(), "text"
        booster = getattr(model, "booster_", model)
        if not hasattr(booster, "model_to_string"):
            raise PublishError(name, f"not a LightGBM model: {type(model).__name__}")
        return booster.model_to_string().encode(), "text"
    if not hasattr(model, "SerializeToString"):
        raise PublishError(name, f"not an ONNX ModelProto: {type(model).__name__}")
    return model.SerializeToString(), "onnx"


def _open(
    framework: str,
    data: bytes,
    fmt: str,
    *,
    name: str,
    version: int | None,
    limits: StoreLimits,
    threads: int,
    n_features: int | None,
    task: str | None,
    classes: list[Any] | None,
    source: str | None = None,
) -> tuple[bytes, Any, Predictor, dict[str, Any]]:
    """Check and load; returns the bytes to store, the model, its predictor and what the
    checks found (``n_features``, ``task``, ``classes``, ``feature_names``, ``estimator``).

    ``source`` is the user's file name at publish (refusals name it). An ONNX predictor's
    columns follow ``classes`` when they are the file's labels in some order, else the
    file's own order: the caller compares ``classes`` with the ``found`` ones.
    """
    filename = source or NATIVE_FILES[framework]
    if framework == "xgboost":
        from ._xgboost_io import load_xgboost, make_xgboost_predictor, xgboost_document

        canonical, xinfo = xgboost_document(
            data, fmt=fmt, limits=limits, name=name, version=version, filename=filename
        )
        booster = load_xgboost(canonical, xinfo, threads=threads, name=name)
        found = {
            "n_features": xinfo.n_features,
            "task": xinfo.task,
            "n_outputs": xinfo.n_outputs,
            "feature_names": xinfo.feature_names,
            "estimator": f"xgboost.{xinfo.booster} {xinfo.objective}",
        }
        return canonical, booster, make_xgboost_predictor(booster, xinfo), found
    if framework == "lightgbm":
        from ._lightgbm_io import lightgbm_text, load_lightgbm, make_lightgbm_predictor

        text, linfo = lightgbm_text(
            data, limits=limits, name=name, version=version, filename=filename
        )
        lbooster = load_lightgbm(text, linfo, name=name)
        found = {
            "n_features": linfo.n_features,
            "task": linfo.task,
            "n_outputs": linfo.n_outputs,
            "feature_names": linfo.feature_names,
            "estimator": f"lightgbm.gbdt {linfo.objective}",
        }
        return (
            text.encode(),
            lbooster,
            make_lightgbm_predictor(lbooster, linfo, threads=threads),
            found,
        )
    from ._onnx_io import (
        check_onnx,
        class_columns,
        load_onnx_session,
        make_onnx_predictor,
    )

    try:
        model, oinfo, width = check_onnx(data, n_features=n_features, task=task, limits=limits)
    except Refused as exc:
        raise UnsafeModelError(
            name, version, filename, reason=f"not a valid ONNX model ({exc})"
        ) from exc
    session = load_onnx_session(data, threads=threads, name=name)
    labels = oinfo.class_labels
    if classes is None or (labels is not None and class_columns(labels, classes) is None):
        classes = labels
    found = {
        "n_features": width,
        "task": oinfo.task,
        "n_outputs": None,
        "feature_names": None,
        "classes": oinfo.class_labels,
        "estimator": f"onnx {model.producer_name or 'unknown'} {model.producer_version}".strip(),
    }
    return data, session, make_onnx_predictor(session, oinfo, classes), found


def _probe(predict: Predictor, n_features: int) -> np.ndarray:
    out = np.asarray(predict(np.zeros((2, n_features))))
    if out.ndim != 2 or out.shape[0] != 2 or not np.isfinite(out).all():
        raise ValueError(f"a probe batch of zeros gave shape {out.shape} or non-finite values")
    return out


def describe_native(
    framework: str,
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
    from ._publish import _input_schema, jsonable_classes

    if tasks is not None or task not in (None, "classification", "regression"):
        raise PublishError(
            name, f"{framework} models are single-task (classification or regression)"
        )
    data, fmt = _as_bytes(framework, model, name)
    declared = dict(input_schema or {})
    given_classes = None if classes is None else jsonable_classes(name, classes)
    stored, _, predict, found = _open(
        framework,
        data,
        fmt,
        name=name,
        version=None,
        limits=limits,
        threads=1,
        n_features=declared.get("n_features"),
        task=task,
        classes=given_classes,
        source=source,
    )
    if task is not None and task != found["task"]:
        raise PublishError(name, f"task {task!r}, but the model's objective is {found['task']}")
    task = found["task"]
    schema = _input_schema(name, declared, found["n_features"], found["feature_names"])
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
        "framework": framework,
        "input_schema": schema,
        "task": task,
        "classes": final,
        "tasks": None,
        "n_outputs": n_outputs,
        "output_kind": expected,
        "estimator": found["estimator"],
        "spec": None,
    }
    return {NATIVE_FILES[framework]: stored}, fields


def load_native(
    manifest: Mapping[str, Any], data: bytes, *, limits: StoreLimits, threads: int
) -> tuple[Any, Predictor]:
    """Check and load a stored native model; its outputs must fit the manifest."""
    framework, name, version = manifest["framework"], manifest["name"], manifest["version"]
    n_features = manifest["input_schema"]["n_features"]
    filename = NATIVE_FILES[framework]
    fmt = {"xgboost": "json", "lightgbm": "text", "onnx": "onnx"}[framework]
    _, model, predict, found = _open(
        framework,
        data,
        fmt,
        name=name,
        version=version,
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
