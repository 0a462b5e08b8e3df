"""Champion/challenger evidence: every strategy's per-event outcome on the same labelled events,
and the one-sided paired tests that say whether a challenger is better than the champion.

:class:`PairedEvidence` keeps, for the last ``window`` labelled events, each strategy's outcome
(1/0 correct for ``mcnemar``, the per-event loss for ``paired_loss``) in one ring buffer
``(window, n_strategies)``, pushed a joined batch at a time. :func:`best_challenger` compares
the champion with every challenger on the rows both were scored on:

- ``mcnemar``: of the discordant events, ``b`` the champion got right and the challenger wrong,
  ``c`` the reverse; the exact one-sided McNemar p-value is ``P(X >= c)`` for ``X ~ Bin(b + c,
  1/2)``; the gain is ``(c - b) / n`` (the difference in accuracy on those ``n`` events).
- ``paired_loss``: ``d = loss_champion - loss_challenger`` per event; a one-sided paired t-test
  on ``d`` (``p = P(T_{n-1} >= mean(d) / (sd(d) / sqrt(n)))``); the gain is ``mean(d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from worker.accuracy.scoring import EPS
from worker.batch.layout import Block

__all__ = ["PairedEvidence", "Verdict", "best_challenger", "mcnemar_greater", "paired_t_greater"]


@dataclass(frozen=True)
class Verdict:
    """A challenger compared with the champion on ``n`` shared labelled events."""

    champion: str
    challenger: str
    test: str
    n: int
    champion_score: float  # accuracy (mcnemar) or mean loss (paired_loss)
    challenger_score: float
    gain: float
    p_value: float

    def figures(self) -> dict[str, float | int | str]:
        return {
            "test": self.test,
            "n": self.n,
            "champion_score": round(self.champion_score, 6),
            "challenger_score": round(self.challenger_score, 6),
            "gain": round(self.gain, 6),
            "p_value": float(f"{self.p_value:.6g}"),
        }


def mcnemar_greater(champion: np.ndarray, challenger: np.ndarray) -> tuple[int, int, float]:
    """``(b, c, p)`` for paired 0/1 outcomes: exact one-sided McNemar (challenger better)."""
    from scipy.stats import binom  # loaded only when a decision is due

    b = int(np.count_nonzero((champion == 1) & (challenger == 0)))
    c = int(np.count_nonzero((champion == 0) & (challenger == 1)))
    p = float(binom.sf(c - 1, b + c, 0.5)) if b + c else 1.0
    return b, c, p


def paired_t_greater(champion_loss: np.ndarray, challenger_loss: np.ndarray) -> tuple[float, float]:
    """``(mean difference, p)``: one-sided paired t-test that the challenger's loss is lower."""
    from scipy.stats import t as student_t

    d = champion_loss - challenger_loss
    n = d.size
    if n < 2:
        return float(d.mean()) if n else 0.0, 1.0
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return mean, 0.0 if mean > 0 else 1.0
    return mean, float(student_t.sf(mean / (sd / np.sqrt(n)), n - 1))


class PairedEvidence:
    """The last ``window`` labelled events' outcome per strategy (NaN: not scored)."""

    def __init__(self, names: Sequence[str], block: Block, test: str, window: int) -> None:
        self.names = list(names)
        self.block = block
        self.test = test
        self.window = window
        self.values = np.full((window, len(self.names)), np.nan)
        self.pos = 0
        self.n_seen = 0

    def reset(self) -> None:
        self.values.fill(np.nan)
        self.pos = self.n_seen = 0

    @property
    def n(self) -> int:
        return min(self.n_seen, self.window)

    def push(self, outputs: dict[str, np.ndarray], y: np.ndarray) -> None:
        """One joined batch: ``outputs`` strategy name to ``(k, n_outputs)`` (NaN rows where it
        failed), ``y`` ``(k,)`` class index or value."""
        k = len(y)
        if k == 0:
            return
        cols = np.full((k, len(self.names)), np.nan)
        for s, name in enumerate(self.names):
            out = outputs.get(name)
            if out is not None:
                cols[:, s] = self._outcome(out[:, self.block.start : self.block.stop], y)
        k = min(k, self.window)
        idx = (self.pos + np.arange(k)) % self.window
        self.values[idx] = cols[-k:]
        self.pos = (self.pos + k) % self.window
        self.n_seen += len(y)

    def _outcome(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        ok = np.isfinite(out).all(axis=1)
        safe = np.where(ok[:, None], out, 0.0)
        if self.block.kind == "classification":
            idx = y.astype(np.int64)
            if self.test == "mcnemar":
                value = (safe.argmax(axis=1) == idx).astype(np.float64)
            else:
                value = -np.log(np.clip(safe[np.arange(len(idx)), idx], EPS, 1.0))
        else:
            value = (safe[:, 0] - y) ** 2
        return np.where(ok, value, np.nan)

    def pair(self, champion: str, challenger: str) -> tuple[np.ndarray, np.ndarray]:
        """Both strategies' outcomes on the rows both were scored on."""
        a = self.values[:, self.names.index(champion)]
        b = self.values[:, self.names.index(challenger)]
        both = np.isfinite(a) & np.isfinite(b)
        return a[both], b[both]


def best_challenger(
    evidence: PairedEvidence,
    champion: str,
    *,
    min_labels: int,
    margin: float,
    alpha: float,
    exclude: Sequence[str] = (),
) -> Verdict | None:
    """The challenger with the largest gain among those better than ``champion`` by at least
    ``margin`` with ``p < alpha`` on at least ``min_labels`` shared events; None if none is."""
    best: Verdict | None = None
    for name in evidence.names:
        if name == champion or name in exclude:
            continue
        a, b = evidence.pair(champion, name)
        n = a.size
        if n < min_labels:
            continue
        if evidence.test == "mcnemar":
            n_b, n_c, p = mcnemar_greater(a, b)
            gain = (n_c - n_b) / n
        else:
            gain, p = paired_t_greater(a, b)
        verdict = Verdict(
            champion, name, evidence.test, n, float(a.mean()), float(b.mean()), gain, p
        )
        if gain >= margin and p < alpha and (best is None or gain > best.gain):
            best = verdict
    return best
