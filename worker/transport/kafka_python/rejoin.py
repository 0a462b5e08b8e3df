"""A version-guarded repair of kafka-python 3.0.12's group rejoin, which can wedge for good.

The flaw, read in the library's ``kafka/coordinator``: a rejoin that a metadata change asks for
(new partitions of a subscribed topic) is not latched in ``rejoin_needed``; the consumer
coordinator's ``need_rejoin`` derives it from ``_assignment_snapshot != _metadata_snapshot``.
While the JoinGroup answer is handled, the leader's ``_perform_assignment`` copies the metadata
snapshot into the assignment snapshot, so ``need_rejoin`` turns False while the join attempt is
still in flight (the SyncGroup answer not in yet). A poll whose wait ends before that answer
returns with the attempt unfinished, and no later poll resumes it (polls only do so while
``need_rejoin`` is True): the member stays REBALANCING with its heartbeats off, the broker evicts
it after the session timeout, and it never rejoins. A second flaw makes short polls worse:
``join_group_async`` replaces an attempt that finished between two polls with a new JoinGroup
instead of taking its answer, so a member that polls with 0 between short sleeps restarts the
rebalance forever.

The repair, installed by :func:`install` only on the version and the source it was written
against (:data:`PATCHED`, hashes of the two functions; a test fails when either changes):

- ``need_rejoin`` latches: a True answer sets ``rejoin_needed``, which only a completed join
  clears (the Java client's behaviour since KAFKA-9815);
- ``join_group_async`` takes the answer of an attempt that finished successfully since the last
  poll (the same steps as the library's own success path) before anything else.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import kafka
from kafka.coordinator.base import BaseCoordinator
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.structs import MemberState

__all__ = ["PATCHED", "install", "installed", "source_hashes"]

log = logging.getLogger("streamfuse.kafka")

PATCHED = {
    "version": "3.0.12",
    "ConsumerCoordinator.need_rejoin": (
        "7f90bc6c6f09cb6e21b84a53b0733ecd3d793a9d9dfe90d2129d78fb5a3493a4"
    ),
    "BaseCoordinator.join_group_async": (
        "f9b7d8038dabf04d5e43becb43a0c5e24627431d2395c06e12c6c2a805fdf8b5"
    ),
}
"""The kafka-python version, and the SHA-256 of each patched function's source, patched here."""

_ORIGINAL: dict[str, Callable[..., Any]] = {}


def _functions() -> dict[str, Callable[..., Any]]:
    return {
        "ConsumerCoordinator.need_rejoin": _ORIGINAL.get(
            "need_rejoin", ConsumerCoordinator.need_rejoin
        ),
        "BaseCoordinator.join_group_async": BaseCoordinator.join_group_async,
    }


def source_hashes() -> dict[str, str]:
    """The SHA-256 of the installed library's source of each function this module patches."""
    return {
        name: hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
        for name, fn in _functions().items()
    }


def installed() -> bool:
    return bool(_ORIGINAL)


def install() -> bool:
    """Patch the consumer coordinator when the library is the one this was written against;
    otherwise log why not and leave it alone. Idempotent; True when the repair is in place."""
    if _ORIGINAL:
        return True
    found = {"version": kafka.__version__, **source_hashes()}
    changed = [name for name, expected in PATCHED.items() if found[name] != expected]
    if changed:
        log.warning(
            "kafka-python %s: its group rejoin is not repaired (%s differ from what the repair "
            "was written for); a member may wedge in a rebalance after partitions are added",
            kafka.__version__,
            ", ".join(changed),
        )
        return False
    need_rejoin = ConsumerCoordinator.need_rejoin
    _ORIGINAL["need_rejoin"] = need_rejoin

    def latched_need_rejoin(self: Any) -> bool:
        if need_rejoin(self):
            self.rejoin_needed = True  # cleared only when a join completes
            return True
        return False

    async def join_group_async(self: Any, timeout_ms: Any = None) -> Any:
        task = self._join_task
        if (
            task is not None
            and task.is_done
            and task.succeeded()
            and self.rejoining
            and self.state is MemberState.REBALANCING
        ):
            # The attempt finished between polls: take its answer (the library's own success
            # path) rather than send a new JoinGroup.
            self._join_task = None
            with self._lock:
                self.rejoining = False
                self.rejoin_needed = False
                self.state = MemberState.STABLE
                self._enable_heartbeat()
            generation = self._generation
            await self._on_join_complete_async(
                generation.generation_id, generation.member_id, generation.protocol, task.value
            )
        return await BaseCoordinator.join_group_async(self, timeout_ms)

    ConsumerCoordinator.need_rejoin = latched_need_rejoin
    ConsumerCoordinator.join_group_async = join_group_async
    return True


def uninstall() -> None:
    """Restore the library's own functions (tests reproduce the flaw with them)."""
    need_rejoin = _ORIGINAL.pop("need_rejoin", None)
    if need_rejoin is not None:
        ConsumerCoordinator.need_rejoin = need_rejoin
        del ConsumerCoordinator.join_group_async
