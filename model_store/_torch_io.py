"""Torch models as safetensors weights plus a JSON architecture spec.

safetensors is a header of JSON and raw tensor bytes: parsing it cannot run code, unlike
``torch.save``'s pickle. Anything that does not parse as safetensors (a pickle, a torch zip
archive) is refused with :class:`UnsafeModelError` before any byte of it is interpreted.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from ._torch_nets import build_clean, build_torch_model, expected_shapes
from .errors import PublishError, UnsafeModelError

#: Weights are stored as float32 (``build_torch_model``'s dtype); anything else is refused
#: instead of cast.
_DTYPE = "F32"
_MAX_HEADER = 16 << 20

__all__ = ["dump_torch", "load_torch", "make_torch_predictor"]


def dump_torch(model: nn.Module, spec: Mapping[str, Any], *, name: str) -> bytes:
    """Serialise ``model``'s weights, checking they fit the architecture ``spec`` describes."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    try:
        build_torch_model(spec).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PublishError(name, f"weights do not match the spec {dict(spec)}: {exc}") from exc
    return safetensors.torch.save(state)


def check_header(
    data: bytes, spec: Mapping[str, Any], *, name: str, version: int, filename: str
) -> None:
    """Compare the safetensors header (names, dtypes, shapes) with the spec, building nothing.

    Runs before any tensor or module is allocated, so a spec with enormous widths costs
    nothing unless a weights file of that size was stored (and fits the size caps).
    """

    def refuse(reason: str) -> UnsafeModelError:
        return UnsafeModelError(name, version, filename, reason=reason)

    if len(data) < 8:
        raise refuse("not a safetensors file (too short)")
    (n_header,) = struct.unpack("<Q", data[:8])
    if n_header > min(_MAX_HEADER, len(data) - 8):
        raise refuse("not a safetensors file (header size out of range)")
    try:
        header = json.loads(data[8 : 8 + n_header])
    except (ValueError, RecursionError) as exc:
        raise refuse("not a safetensors file (header is not JSON)") from exc
    if not isinstance(header, dict):
        raise refuse("not a safetensors file (header is not an object)")
    header.pop("__metadata__", None)
    expected = expected_shapes(spec)
    if set(header) != set(expected):
        extra, absent = sorted(set(header) - set(expected)), sorted(set(expected) - set(header))
        raise refuse(f"weights do not match the spec: unexpected {extra[:5]}, missing {absent[:5]}")
    for key, shape in expected.items():
        entry = header[key]
        if not isinstance(entry, dict) or entry.get("dtype") != _DTYPE:
            got = entry.get("dtype") if isinstance(entry, dict) else entry
            raise refuse(f"tensor {key!r} has dtype {got!r}, expected {_DTYPE}")
        if entry.get("shape") != list(shape):
            raise refuse(
                f"tensor {key!r} has shape {entry.get('shape')}, the spec says {list(shape)}"
            )


def load_torch(
    data: bytes, spec: Mapping[str, Any], *, name: str, version: int, filename: str
) -> nn.Module:
    """Rebuild the module from ``spec`` and load the safetensors weights into it (eval mode).

    The header is compared with the spec first (:func:`check_header`); weights must be
    finite float32.
    """
    check_header(data, spec, name=name, version=version, filename=filename)
    try:
        state = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError and others
        raise UnsafeModelError(
            name, version, filename, reason=f"not a safetensors file ({exc.__class__.__name__})"
        ) from exc
    for key, tensor in state.items():
        if not bool(torch.isfinite(tensor).all()):
            raise UnsafeModelError(
                name, version, filename, reason=f"tensor {key!r} holds NaN or infinity"
            )
    model = build_clean(spec)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UnsafeModelError(
            name, version, filename, reason=f"weights do not match the spec: {exc}"
        ) from exc
    return model.eval()


def make_torch_predictor(
    model: nn.Module, spec: Mapping[str, Any]
) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap a module as ``X (n_events, n_features) -> (n_events, n_outputs) float64``.

    Classification outputs (or blocks, for a multi-task model) go through a softmax;
    regression values pass through unchanged. Blocks follow the order of ``spec["tasks"]``.
    """
    model.eval()
    if spec["arch"] == "mlp":
        softmax = spec["task"] == "classification"

        def predict_single(X: np.ndarray) -> np.ndarray:
            x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
            with torch.inference_mode():
                out = model(x)
                if softmax:
                    out = torch.softmax(out, dim=1)
            result: np.ndarray = out.numpy().astype(np.float64)
            return result

        return predict_single

    tasks = [(t["name"], t["type"] == "classification") for t in spec["tasks"]]

    def predict_multitask(X: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        with torch.inference_mode():
            heads = model(x)
            blocks = [
                torch.softmax(heads[task], dim=1) if is_clf else heads[task]
                for task, is_clf in tasks
            ]
            out = torch.cat(blocks, dim=1)
        return out.numpy().astype(np.float64)

    return predict_multitask
