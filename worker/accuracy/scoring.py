"""Scores of predictions against targets, as ``train``'s tables (docs/strategies.md) and ``replay``
report them."""

from __future__ import annotations

import numpy as np

__all__ = ["score", "score_table"]

EPS = 1e-15


def score(kind: str, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy and log-loss (classification, ``y`` as class indices) or MAE and RMSE.

    Parameters
    ----------
    outputs : ndarray of shape (n_events, n_outputs)
    y : ndarray of shape (n_events,)
    """
    if kind == "classification":
        idx = y.astype(np.int64)
        p = np.clip(outputs[np.arange(len(idx)), idx], EPS, 1.0)
        return {
            "accuracy": float(np.mean(outputs.argmax(axis=1) == idx)),
            "log_loss": float(-np.mean(np.log(p))),
        }
    err = outputs[:, 0] - y.astype(np.float64)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def score_table(rows: list[tuple[str, str, dict[str, float]]]) -> str:
    """A markdown table of ``(scope, name, scores)`` rows, one column per metric seen."""
    metrics = sorted({k for _, _, s in rows for k in s})
    lines = [f"| scope | name | {' | '.join(metrics)} |", "|" + "---|" * (2 + len(metrics))]
    for scope, name, scores in rows:
        cells = " | ".join(f"{scores[m]:.4f}" if m in scores else "" for m in metrics)
        lines.append(f"| {scope} | {name} | {cells} |")
    return "\n".join(lines)
