"""Blocking Kafka calls under a deadline, for both adapters.

A client library's timeouts are not always kept: librdkafka's ``send_offsets_to_transaction()``
waits past its timeout while the group coordinator cannot be reached (librdkafka #5456), and
several kafka-python calls take no timeout at all. A :class:`CallGuard` runs one client's
blocking calls (flush, the transaction calls, commit, close) on a daemon thread of its own and
waits for each at most its deadline; when that passes it raises
:class:`worker.errors.KafkaCallStuckError` naming the call, and the adapter's caller replaces the
client. The thread stays blocked in the stuck call, and keeps the stuck client referenced, until
the library returns; until then the call is listed by :func:`stuck_calls` (``/healthz`` names it).

Nothing here imports a Kafka client.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from worker.errors import KafkaCallStuckError

__all__ = ["MARGIN_S", "CallGuard", "StuckCall", "bounded", "stuck_calls", "wait_unstuck"]

T = TypeVar("T")

MARGIN_S = 5.0  # beyond the timeout a call is given: the library's own timeout answers first


@dataclass(frozen=True)
class StuckCall:
    """A call past its deadline that has not returned yet."""

    client: str
    call: str
    since: float  # time.monotonic() when the deadline passed


_lock = threading.Lock()
_returned_now = threading.Condition(_lock)
_stuck: dict[int, StuckCall] = {}
_ids = itertools.count()


def stuck_calls() -> list[tuple[str, float]]:
    """Each call past its deadline still blocked in its library (``client.call``), with the
    seconds since its deadline passed, oldest first."""
    now = time.monotonic()
    with _lock:
        found = sorted(_stuck.values(), key=lambda s: s.since)
    return [(f"{s.client}.{s.call}", now - s.since) for s in found]


def wait_unstuck(timeout_s: float) -> bool:
    """Wait until no call is stuck (a test's clean-up); False when some still are."""
    with _returned_now:
        return _returned_now.wait_for(lambda: not _stuck, timeout_s)


class _Job:
    __slots__ = ("call", "done", "error", "name", "stuck_id", "value")

    def __init__(self, call: Callable[[], Any], name: str) -> None:
        self.call = call
        self.name = name
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.stuck_id: int | None = None  # set (under _lock) once the caller gave up on it

    def run(self) -> None:
        try:
            self.value = self.call()
        except BaseException as exc:  # handed back to the caller's thread
            self.error = exc
        with _lock:
            self.done.set()
            if self.stuck_id is not None:
                _stuck.pop(self.stuck_id, None)
                _returned_now.notify_all()
        self.call = _returned  # drop the client's references once it has returned


def _returned() -> None:
    return None


def _wait(job: _Job, client: str, timeout_s: float) -> Any:
    if not job.done.wait(timeout_s):
        with _lock:
            if not job.done.is_set():
                job.stuck_id = next(_ids)
                _stuck[job.stuck_id] = StuckCall(client, job.name, time.monotonic())
                raise KafkaCallStuckError(job.name, timeout_s)
    if job.error is not None:
        raise job.error
    return job.value


class CallGuard:
    """One client's blocking calls, run one at a time on a daemon thread of its own.

    After a call is stuck the thread is left to it, and the next :meth:`run` starts a new
    thread (the caller is expected to have replaced the client by then)."""

    def __init__(self, client: str) -> None:
        self.client = client
        self._jobs: queue.SimpleQueue[_Job | None] | None = None

    def _queue(self) -> queue.SimpleQueue[_Job | None]:
        if self._jobs is None:
            jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            threading.Thread(
                target=_serve, args=(jobs,), name=f"kafka-{self.client}", daemon=True
            ).start()
            self._jobs = jobs
        return self._jobs

    def run(self, call: Callable[[], T], name: str, timeout_s: float) -> T:
        """``call()``'s value (or its exception) if it returns within ``timeout_s``; else
        :class:`worker.errors.KafkaCallStuckError`."""
        job = _Job(call, name)
        self._queue().put(job)
        try:
            value: T = _wait(job, self.client, timeout_s)
        except KafkaCallStuckError:
            self._jobs = None  # that thread is blocked: the next call gets a new one
            raise
        return value

    def close(self) -> None:
        """End the thread once its current call (if any) returns."""
        jobs, self._jobs = self._jobs, None
        if jobs is not None:
            jobs.put(None)


def _serve(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while True:
        job = jobs.get()
        if job is None:
            return
        job.run()
        if job.stuck_id is not None:
            return  # the guard has moved on to a new thread


def bounded(call: Callable[[], T], name: str, timeout_s: float, client: str = "client") -> T:
    """One call under a deadline on a thread of its own (calls made once, at start-up)."""
    job = _Job(call, name)
    threading.Thread(target=job.run, name=f"kafka-{client}-{name}", daemon=True).start()
    value: T = _wait(job, client, timeout_s)
    return value
