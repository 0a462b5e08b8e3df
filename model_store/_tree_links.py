"""One structural check shared by the gradient-boosting loaders: the links of a binary tree.

XGBoost and LightGBM walk a tree from node 0 following child indices, with no bounds check
and no visit limit. :func:`check_links` makes that walk provably safe: every child of a
split is in range and not the node itself, the root has no parent and no node has two, so
the part reachable from the root is a tree (a cycle through it would give some node two
parents) and every walk ends at a leaf within ``n`` steps.
"""

from __future__ import annotations

import numpy as np

from ._refused import Refused

__all__ = ["check_links"]


def check_links(left: np.ndarray, right: np.ndarray, is_split: np.ndarray, where: str) -> None:
    """Refuse unless the splits' children (node indices, shape ``(n,)``) form a tree."""
    n = len(is_split)
    index = np.arange(n)[is_split]
    lc, rc = left[is_split].astype(np.int64), right[is_split].astype(np.int64)
    children = np.concatenate([lc, rc])
    if ((children < 0) | (children >= n)).any() or (lc == index).any() or (rc == index).any():
        raise Refused(f"{where}: a child index is out of range or points to itself")
    parents = np.bincount(children, minlength=n)
    if n and (parents[0] != 0 or (parents > 1).any()):
        raise Refused(f"{where}: a node has two parents, or the root has one (not a tree)")
