"""A rollout step's gates: advance, hold or roll back, on paired evidence from both arms.

Both arms predict every event, so every labelled event scores the champion and the candidate
on the same row (:class:`~worker.accuracy.challenger.PairedEvidence` with the two names
:data:`ARM_NAMES`). :func:`judge` applies, in this order:

1. the candidate's own limits, any time: its predict p99 over ``max_p99_ms`` or its error rate
   (batches where it failed) over ``max_error_rate`` rolls it back;
2. significantly worse, any time: the one-sided paired test of :mod:`~worker.accuracy.challenger`
   with the arms swapped (McNemar: the champion right where the candidate is wrong; paired loss:
   the champion's loss lower) at ``p < alpha`` rolls it back;
3. advance once the step has ``min_labels`` paired labels and lasted ``min_duration_s``; to the
   last step (and from it, to done) only when the candidate is significantly *better* at
   ``alpha`` with ``promote_if_better``.

Each look is a test at level ``alpha``: a worker looks every ``interval_s``, so over many looks
a candidate equal to the champion is rolled back now and then; a lower ``alpha`` keeps that rare.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from worker.accuracy.challenger import PairedEvidence, mcnemar_greater, paired_t_greater
from worker.batch.layout import Block

__all__ = ["ARM_NAMES", "Gates", "Judgement", "Vitals", "judge", "new_evidence"]

ARM_NAMES = ("champion", "candidate")


@dataclass(frozen=True)
class Gates:
    """One rollout's gates, the same at every step (stored in its record)."""

    min_labels: int = 200
    min_duration_s: float = 60.0
    max_p99_ms: float | None = None
    max_error_rate: float | None = None
    alpha: float = 0.05
    test: str = "mcnemar"
    promote_if_better: bool = False
    window: int = 5000

    def __post_init__(self) -> None:
        if self.test not in ("mcnemar", "paired_loss"):
            raise ValueError(f"test must be mcnemar or paired_loss, not {self.test!r}")
        if not 0 < self.alpha < 1 or self.min_labels < 1 or self.window < self.min_labels:
            raise ValueError("need 0 < alpha < 1 and 1 <= min_labels <= window")

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Gates:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


@dataclass(frozen=True)
class Vitals:
    """The candidate's own health at this step: its predict seconds per batch and failures."""

    elapsed_s: float
    p99_ms: float | None  # None: no batch yet
    n_batches: int
    n_errors: int

    @property
    def error_rate(self) -> float:
        return self.n_errors / self.n_batches if self.n_batches else 0.0


@dataclass(frozen=True)
class Judgement:
    """``action``: ``hold``, ``advance`` (to the next step, or done from the last) or
    ``rollback``; ``why`` says which gate; ``figures`` go into the record's history."""

    action: str
    why: str
    figures: dict[str, Any]


def judge(gates: Gates, evidence: PairedEvidence, vitals: Vitals, *, to_last: bool) -> Judgement:
    """The step's verdict. ``to_last``: advancing would reach the last step or finish."""
    champion, candidate = evidence.pair(*ARM_NAMES)
    n = int(champion.size)
    p_worse, p_better = _p_values(gates.test, champion, candidate)
    figures: dict[str, Any] = {
        "test": gates.test,
        "n": n,
        "champion_score": _mean(champion),
        "candidate_score": _mean(candidate),
        "p_worse": float(f"{p_worse:.6g}"),
        "p_better": float(f"{p_better:.6g}"),
        "elapsed_s": round(vitals.elapsed_s, 3),
        "p99_ms": None if vitals.p99_ms is None else round(vitals.p99_ms, 3),
        "error_rate": round(vitals.error_rate, 6),
    }
    p99, limit = vitals.p99_ms, gates.max_p99_ms
    if limit is not None and p99 is not None and p99 > limit:
        why = f"candidate p99 {p99:.1f} ms over the limit {limit:g} ms"
        return Judgement("rollback", why, figures)
    if gates.max_error_rate is not None and vitals.error_rate > gates.max_error_rate:
        why = (
            f"candidate error rate {vitals.error_rate:.3g} over the limit {gates.max_error_rate:g}"
        )
        return Judgement("rollback", why, figures)
    if p_worse < gates.alpha:
        why = f"candidate significantly worse: {gates.test} p = {p_worse:.3g} < {gates.alpha:g}"
        return Judgement("rollback", why, figures)
    if n < gates.min_labels:
        return Judgement("hold", f"{n} of {gates.min_labels} labels", figures)
    if vitals.elapsed_s < gates.min_duration_s:
        why = f"{vitals.elapsed_s:.0f} of {gates.min_duration_s:g} s"
        return Judgement("hold", why, figures)
    if to_last and gates.promote_if_better and not p_better < gates.alpha:
        why = f"not significantly better: {gates.test} p = {p_better:.3g} >= {gates.alpha:g}"
        return Judgement("hold", why, figures)
    return Judgement("advance", f"{n} labels, not worse (p = {p_worse:.3g})", figures)


def _p_values(test: str, champion: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """One-sided p-values that the candidate is worse, and that it is better."""
    if test == "mcnemar":
        return mcnemar_greater(candidate, champion)[2], mcnemar_greater(champion, candidate)[2]
    # paired_loss: outcomes are losses, lower is better
    return paired_t_greater(candidate, champion)[1], paired_t_greater(champion, candidate)[1]


def _mean(values: np.ndarray) -> float | None:
    return round(float(values.mean()), 6) if values.size else None


def new_evidence(gates: Gates, block: Block) -> PairedEvidence:
    """Empty paired evidence for the two arms of a rollout."""
    return PairedEvidence(ARM_NAMES, block, gates.test, gates.window)
