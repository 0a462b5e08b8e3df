"""Torch models as safetensors weights plus a JSON architecture spec.

safetensors is a header of JSON and raw tensor bytes: parsing it cannot run code, unlike
``torch.save``'s pickle. Anything that does not parse as safetensors (a pickle, a torch zip
archive) is refused with :class:`UnsafeModelError` before any byte of it is interpreted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from ._torch_nets import build_torch_model
from .errors import PublishError, UnsafeModelError

__all__ = ["dump_torch", "load_torch", "make_torch_predictor"]


def dump_torch(model: nn.Module, spec: Mapping[str, Any], *, name: str) -> bytes:
    """Serialise ``model``'s weights, checking they fit the architecture ``spec`` describes."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    try:
        build_torch_model(spec).load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise PublishError(name, f"weights do not match the spec {dict(spec)}: {exc}") from exc
    return safetensors.torch.save(state)


def load_torch(
    data: bytes, spec: Mapping[str, Any], *, name: str, version: int, filename: str
) -> nn.Module:
    """Rebuild the module from ``spec`` and load the safetensors weights into it (eval mode)."""
    try:
        state = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError and others
        raise UnsafeModelError(
            name, version, filename, reason=f"not a safetensors file ({exc.__class__.__name__})"
        ) from exc
    model = build_torch_model(spec)
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
            return out.numpy().astype(np.float64)

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
