"""Training loop for ``multitask``: full-batch Adam in torch, returning numpy parameters.

Imported only by ``MultiTask.fit``, so ``import combiners`` does not load torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from combiners._tasks import TaskSpec
from combiners._validation import FloatArray

__all__ = ["train_network"]


def _uniform(shape: tuple[int, ...], fan_in: int, gen: torch.Generator) -> torch.Tensor:
    """PyTorch's default Linear initialisation, drawn from a local generator."""
    bound = 1.0 / math.sqrt(fan_in)
    tensor = torch.empty(shape, dtype=torch.float64)
    torch.nn.init.uniform_(tensor, -bound, bound, generator=gen)
    return tensor.requires_grad_()


def train_network(
    Z: FloatArray,
    targets: FloatArray,
    specs: list[TaskSpec],
    *,
    hidden: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    seed: int,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Fit ``heads(relu(trunk(Z)))`` on the summed task losses.

    Parameters
    ----------
    Z : ndarray of shape (n_events, n_inputs)
        Standardised inputs.
    targets : ndarray of shape (n_events, n_tasks)
        Class indices, or standardised regression targets.

    Returns
    -------
    trunk_weight (hidden, n_inputs), trunk_bias (hidden,), heads_weight (n_out, hidden),
    heads_bias (n_out,) as float64 numpy arrays.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_inputs = Z.shape[1]
    n_out = sum(s["n_outputs"] for s in specs)
    params = [
        _uniform((hidden, n_inputs), n_inputs, gen),
        _uniform((hidden,), n_inputs, gen),
        _uniform((n_out, hidden), hidden, gen),
        _uniform((n_out,), hidden, gen),
    ]
    z = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float64))
    t = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float64))
    blocks: list[tuple[slice, int, TaskSpec]] = []
    start = 0
    for j, spec in enumerate(specs):
        blocks.append((slice(start, start + spec["n_outputs"]), j, spec))
        start += spec["n_outputs"]
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    w1, b1, w2, b2 = params
    for _ in range(epochs):
        optimiser.zero_grad()
        raw = torch.relu(z @ w1.T + b1) @ w2.T + b2
        loss = torch.zeros((), dtype=torch.float64)
        for block, j, spec in blocks:
            if spec["type"] == "classification":
                loss = loss + torch.nn.functional.cross_entropy(raw[:, block], t[:, j].long())
            else:
                loss = loss + torch.nn.functional.mse_loss(raw[:, block][:, 0], t[:, j])
        loss.backward()
        optimiser.step()
    w1_, b1_, w2_, b2_ = (p.detach().numpy().copy() for p in params)
    return w1_, b1_, w2_, b2_
