"""The candidate arm of a rollout, predicted on every event beside the champion.

:class:`Arms` holds the candidate's serving snapshot, built from the champion's (``base``) with
one model's version replaced and/or another strategy active. Only the models whose version
differs are predicted again, on a :class:`~worker.inference.fanout.Fanout` of their own started
with the champion's; the others' outputs are shared. The candidate's active strategy combines
them; :func:`~worker.inference.arms.select` then publishes its rows for the events whose key is
in the canary (:mod:`worker.inference.arms`) and the champion's elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from worker.inference.arms import bucket_of, in_canary, select
from worker.inference.fanout import Fanout, FanoutResult, Submitted
from worker.inference.serving import Serving

__all__ = ["ArmOutputs", "Arms"]


@dataclass
class ArmOutputs:
    """Both arms on one batch: ``champion`` and ``candidate`` of shape (n, n_outputs)
    (``candidate`` None when it failed: every event is then the champion's), ``canary`` (n,)
    bool: the events published with the candidate's output."""

    champion: np.ndarray
    candidate: np.ndarray | None
    canary: np.ndarray
    seconds: float
    error: str | None = None

    def published(self) -> np.ndarray:
        if self.candidate is None:
            return self.champion
        return select(self.champion, self.candidate, self.canary)


@dataclass
class Arms:
    """A rollout's candidate snapshot at ``share`` percent of keys."""

    serving: Serving
    base: Serving
    share: float
    timeout_s: float = 30.0
    extra: tuple[int, ...] = field(init=False)
    fanout: Fanout | None = field(init=False)

    def __post_init__(self) -> None:
        mine, theirs = self.serving.model_set.models, self.base.model_set.models
        self.extra = tuple(
            m for m, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a is not b
        )
        names = [f"candidate-{mine[m].name}" for m in self.extra]
        self.fanout = Fanout(names, self.timeout_s) if names else None

    def at_share(self, share: float) -> Arms:
        """The same candidate (its model threads kept) at another share."""
        other = Arms.__new__(Arms)
        other.__dict__.update(self.__dict__)
        other.share = share
        return other

    def close(self) -> None:
        if self.fanout is not None:
            self.fanout.close()

    def submit(self, X: np.ndarray) -> Submitted | None:
        """Start the candidate's own models on ``X`` (None: it has none of its own)."""
        if self.fanout is None:
            return None
        fns = self.serving.predict_fns
        return self.fanout.submit([fns[m] for m in self.extra], X)

    def outputs(
        self,
        keys: list[bytes],
        champion: np.ndarray,
        fan: FanoutResult,
        submitted: Submitted | None,
    ) -> ArmOutputs:
        """Both arms on the batch whose champion models gave ``fan``; ``champion`` is the
        champion's combined output, ``keys`` each event's key (:func:`~worker.inference.arms.
        event_keys`)."""
        t0 = time.perf_counter()
        canary = in_canary(bucket_of(keys), self.share)
        P, available, seconds = fan.P, fan.available, 0.0
        if submitted is not None and self.fanout is not None:
            own = self.fanout.collect(submitted, P.shape[2])
            if not own.available.all():
                why = "; ".join(f"{f.model}: {f.kind}: {f.message}" for f in own.failures)
                return ArmOutputs(
                    champion, None, np.zeros_like(canary), float(own.seconds.max()), why
                )
            P, available = P.copy(), available.copy()
            P[list(self.extra)] = own.P
            available[list(self.extra)] = True
            seconds = float(own.seconds.max())
        try:
            candidate = self.serving.active.combiner.combine(P, available=available)
        except Exception as exc:  # the candidate's failure never fails the champion's batch
            why = f"strategy {self.serving.active.name}: {type(exc).__name__}: {exc}"
            return ArmOutputs(champion, None, np.zeros_like(canary), seconds, why)
        seconds += time.perf_counter() - t0
        ok = candidate.shape == champion.shape and bool(np.isfinite(candidate).all())
        if not ok:
            why = f"candidate output of shape {candidate.shape} or not finite"
            return ArmOutputs(champion, None, np.zeros_like(canary), seconds, why)
        return ArmOutputs(champion, candidate, canary, seconds)
