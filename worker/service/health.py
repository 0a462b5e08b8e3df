"""Whether a worker is alive and ready, for the metrics server's ``/healthz`` and ``/readyz``.

The loop beats a :class:`Heartbeat` on every turn, every poll and every backoff wait between
retries, and reports what its polls and deliveries did; the metrics server's thread reads it
through :class:`Health`, which also knows the worker's phase (models loading, connecting,
running, stopping), its partition assignment and whether the lag thread reaches the brokers.

- **alive** (``/healthz``): running, and the loop's last beat is at most :func:`stall_bound_s`
  old. A loop blocked in a model or strategy call stops beating; a loop retrying against a
  broker that is down still beats (restarting the process would not bring the broker back). A
  blocking Kafka call is given a deadline (:mod:`worker.transport.deadline`), after which its
  client is replaced and the loop goes on: while the stuck call has not returned, the reason
  names it (``stuck_calls`` in the body), still 200. After the membership watchdog reset the
  consumer 3 times in 10 minutes (:mod:`.watchdog`) it fails, naming why: a restart is what
  is left. Before the loop runs it answers 503
  "starting": probe it with a start-up probe that allows for loading the models.
- **ready** (``/readyz``): alive, models loaded, connected (topics checked, producer ready, the
  last poll and delivery did not fail, the lag thread reached the brokers), and the group has
  assigned this member its partitions: none is a legitimate answer (more members than
  partitions), but no answer yet is not ready; nor is a member that has been rebalancing
  longer than ``kafka.rebalance_stuck_s``, or that the watchdog finds orphaned (a wedged
  membership serves nothing while the loop keeps beating).

Nothing here imports a Kafka client; every verdict is computed from plain fields and a clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.config import Settings
from worker.transport.deadline import stuck_calls

__all__ = ["RELOAD_ALLOWANCE_S", "Health", "Heartbeat", "Verdict", "stall_bound_s"]

RELOAD_ALLOWANCE_S = 30.0  # a hot reload (load, probe, refit) and a rebalance inside one turn

Clock = Callable[[], float]


def stall_bound_s(settings: Settings) -> float:
    """How long the loop may go without beating before ``/healthz`` fails.

    ``metrics.loop_stall_s`` when set; else the longest a healthy turn can block: the models'
    deadline (``on_model_error.timeout_ms``) and the batch wait (``batch.max_wait_ms``), two
    watchdog periods (``kafka.watchdog_s``: a flush or transaction call that times out, then
    the call that replaces the producer) and :data:`RELOAD_ALLOWANCE_S`. With the defaults:
    1 + 0.02 + 2 x 30 + 30 = 91.02 s.
    """
    if settings.metrics.loop_stall_s is not None:
        return settings.metrics.loop_stall_s
    return (
        settings.on_model_error.timeout_ms / 1000
        + settings.batch.max_wait_ms / 1000
        + 2 * settings.kafka.watchdog_s
        + RELOAD_ALLOWANCE_S
    )


class Heartbeat:
    """What the loop reports, written by the loop's thread and read by the server's."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.last: float | None = None
        self.n_beats = 0
        self.poll_error: str | None = None
        self.delivery_error: str | None = None

    def beat(self) -> None:
        self.last = self.clock()
        self.n_beats += 1

    def polled(self, error: str | None = None) -> None:
        self.poll_error = error

    def delivered(self, error: str | None = None) -> None:
        self.delivery_error = error

    def age(self) -> float | None:
        """Seconds since the last beat (None: never beaten)."""
        return None if self.last is None else self.clock() - self.last


@dataclass(frozen=True)
class Verdict:
    """An endpoint's answer: 200 when ``ok``, else 503; ``body`` is its JSON."""

    ok: bool
    body: dict[str, Any]

    @property
    def status(self) -> int:
        return 200 if self.ok else 503


class Health:
    """The worker's phase and the loop's heartbeat, turned into the two verdicts.

    Phases, in order: ``loading`` (models), ``connecting`` (topics, producer, consumer),
    ``running`` (the loop), ``stopping`` (asked to stop: finishing the batch), ``stopped``.
    """

    def __init__(
        self,
        stall_after_s: float,
        clock: Clock = time.monotonic,
        rebalance_stuck_s: float | None = None,
        stuck: Callable[[], list[tuple[str, float]]] = stuck_calls,
    ) -> None:
        self.stall_after_s = stall_after_s
        self.stuck = stuck  # Kafka calls past their deadline that have not returned yet
        self.rebalance_stuck_s = rebalance_stuck_s  # None: no bound
        self.clock = clock
        self.group_state: str | None = None  # None: the source has not reported yet
        self._group_since = 0.0
        self.heartbeat = Heartbeat(clock)
        self.phase = "loading"
        self.n_assigned: int | None = None  # None: the group has not answered yet
        self.broker_error: str | None = None  # the lag thread's last failure to reach the brokers
        self.registry_error: str | None = None  # why the batch waits for the Schema Registry
        # the membership watchdog's: why the membership is wedged now, why restarting is due
        self.wedged: Callable[[], str | None] = lambda: None
        self.resets_failing: Callable[[], str | None] = lambda: None
        self.input_missing: Callable[[], str | None] = lambda: None  # the input topic deleted

    # -- what the worker reports -------------------------------------------------------------

    def set_phase(self, phase: str) -> None:
        if phase not in ("loading", "connecting", "running", "stopping", "stopped"):
            raise ValueError(f"unknown phase {phase!r}")
        if phase == "running":
            self.heartbeat.beat()  # the loop starts now: the bound counts from here
        self.phase = phase

    def assigned(self, n_partitions: int) -> None:
        self.n_assigned = n_partitions

    def registry_reached(self, error: str | None) -> None:
        self.registry_error = error

    def brokers_reached(self, error: str | None) -> None:
        self.broker_error = error

    def membership(self, state: str, age_s: float) -> None:
        """The source's group state (stable, rebalancing, unassigned) and its age now."""
        self.group_state = state
        self._group_since = self.clock() - age_s

    def rebalancing_too_long(self) -> str | None:
        """Why the membership looks wedged, or None."""
        if self.group_state != "rebalancing" or self.rebalance_stuck_s is None:
            return None
        age = self.clock() - self._group_since
        if age <= self.rebalance_stuck_s:
            return None
        return f"rebalancing for {age:.0f} s (bound {self.rebalance_stuck_s:g} s)"

    # -- the verdicts ------------------------------------------------------------------------

    def liveness(self) -> Verdict:
        if self.phase in ("loading", "connecting"):
            reason = "starting: " + _PHASES[self.phase]
            return Verdict(False, {"status": "starting", "reason": reason, "phase": self.phase})
        if self.phase == "stopped":
            return Verdict(False, {"status": "stopped", "reason": "the loop has ended"})
        age = self.heartbeat.age()
        body: dict[str, Any] = {
            "phase": self.phase,
            "last_turn_s_ago": None if age is None else round(age, 3),
            "bound_s": self.stall_after_s,
            "turns": self.heartbeat.n_beats,
        }
        if age is None or age > self.stall_after_s:
            reason = (
                f"no loop turn for {age or 0.0:.1f} s (bound {self.stall_after_s:g} s): the "
                "loop is blocked (a model or strategy that does not return, or a Kafka call)"
            )
            return Verdict(False, {"status": "stalled", "reason": reason, **body})
        failing = self.resets_failing()
        if failing is not None:
            return Verdict(False, {"status": "wedged", "reason": failing, **body})
        reason = f"last loop turn {age:.1f} s ago (bound {self.stall_after_s:g} s)"
        stuck = self.stuck()
        if stuck:
            body["stuck_calls"] = {call: round(s, 1) for call, s in stuck}
            named = ", ".join(f"{call}() {s:.0f} s past its deadline" for call, s in stuck)
            reason += f"; Kafka call stuck, its client replaced: {named}"
        return Verdict(True, {"status": "alive", "reason": reason, **body})

    def readiness(self) -> Verdict:
        live = self.liveness()
        checks = {
            "models": "loading" if self.phase == "loading" else "loaded",
            "kafka": self._kafka(),
            "assignment": self._assignment(),
            "loop": live.body["status"],
        }
        stuck = self.rebalancing_too_long() or self.wedged()
        if self.group_state is not None:
            checks["group"] = stuck or self.group_state
        problems = []
        if self.phase in ("loading", "connecting", "stopping", "stopped"):
            problems.append(_PHASES[self.phase])
        if self.phase not in ("loading", "connecting") and checks["kafka"] != "connected":
            problems.append(checks["kafka"])
        if self.phase == "running" and self.n_assigned is None:
            problems.append(checks["assignment"])
        if self.phase == "running" and stuck:
            problems.append(f"the consumer group membership is {stuck}")
        if self.phase == "running" and not live.ok:
            problems.append(live.body["reason"])
        missing = self.input_missing()
        if missing is not None:
            checks["input_topic"] = missing
            problems.append(missing)
        if self.registry_error is not None:
            checks["schema_registry"] = self.registry_error
            problems.append(f"the batch waits: {self.registry_error}")
        if problems:
            reason = "; ".join(problems)
            return Verdict(False, {"status": "not ready", "reason": reason, "checks": checks})
        return Verdict(True, {"status": "ready", "reason": "serving", "checks": checks})

    def _kafka(self) -> str:
        if self.phase in ("loading", "connecting"):
            return "connecting"
        hb = self.heartbeat
        for what, error in (
            ("the last poll failed", hb.poll_error),
            ("the last delivery failed", hb.delivery_error),
            ("the brokers did not answer", self.broker_error),
        ):
            if error is not None:
                return f"{what}: {error}"
        return "connected"

    def _assignment(self) -> str:
        if self.n_assigned is None:
            return "waiting for the group to assign partitions"
        if self.n_assigned == 0:
            return "no partitions (the group has more members than partitions)"
        return f"{self.n_assigned} partition{'' if self.n_assigned == 1 else 's'}"


_PHASES = {
    "loading": "loading the models",
    "connecting": "connecting to Kafka",
    "running": "running",
    "stopping": "stopping: finishing the current batch",
    "stopped": "stopped",
}
