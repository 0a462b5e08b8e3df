"""Start the tests' workers by forking a process that has already imported what a worker imports.

A worker spends about four CPU seconds importing numpy, scikit-learn, skops and torch before it
reads its config, and the suite starts a few hundred of them on two cores: most of the run's
CPU went there. :class:`tests.support.worker.WorkerProcess` asks this server (one per test
process, started on first use) to fork a child that runs ``worker.cli`` with the test's
arguments, environment, working directory and log file: the code ``streamfuse run`` runs, from
``main`` on, in a process of its own with a real PID (signals, ``/proc``). What a fresh
interpreter does at exit (wait for non-daemon threads, ``atexit``) the child does too; its exit
status comes back through a file the server writes when it reaps it, named by the request's
number rather than the PID: PIDs wrap (at 32768 on the CI machine) within a run, and a new child
given an earlier one's PID would otherwise read that one's status as its own.

``STREAMFUSE_TEST_FORK=0`` starts every worker as a fresh interpreter instead.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["ForkedProcess", "enabled", "spawn"]

# What a worker serving the suite's stores imports (imported here once, before any fork).
PRELOAD = (
    "numpy",
    "torch",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.neural_network",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "skops.io",
    "kafka",
    "worker.cli",
    "worker.service.process",
    "worker.service.worker",
    "worker.transport.kafka_python",
    "model_store",
)


def enabled() -> bool:
    return os.environ.get("STREAMFUSE_TEST_FORK", "1") != "0"


class ForkedProcess:
    """The part of :class:`subprocess.Popen` the tests use, for a child of the fork server."""

    def __init__(self, args: list[str], pid: int, status: Path) -> None:
        self.args = args
        self.pid = pid
        self.returncode: int | None = None
        self._status = status

    def poll(self) -> int | None:
        if self.returncode is None and self._status.exists():
            self.returncode = int(self._status.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.02)  # the server writes the status within 50 ms of the exit
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.statuses = Path(tempfile.mkdtemp(prefix="streamfuse-fork-"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver", str(self.statuses)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.lock = threading.Lock()

    def spawn(self, args: list[str], env: dict[str, str], log: Path) -> ForkedProcess:
        request = {"args": args, "env": env, "cwd": os.getcwd(), "log": str(log)}
        with self.lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server exited with {self.proc.wait()}")
        pid, number = (int(part) for part in line.split())
        return ForkedProcess(["worker.cli", *args], pid, self.statuses / str(number))


_server: _Server | None = None
_server_lock = threading.Lock()


def spawn(args: list[str], env: dict[str, str], log: Path, server_env: dict[str, str]) -> Any:
    """A child of this process's fork server running ``worker.cli`` ``args`` with ``env``, its
    output appended to ``log`` (the server is started with ``server_env`` on first use)."""
    global _server
    with _server_lock:
        if _server is None or _server.proc.poll() is not None:
            _server = _Server(server_env)
    return _server.spawn(args, env, log)


# -- the server ----------------------------------------------------------------------------------


def _child(request: dict[str, Any]) -> None:
    """Become the worker ``request`` asks for; never returns."""
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - fd 0 stays open
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [sys.argv[0], *request["args"]]
        from worker.cli import main

        try:
            code = main(request["args"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        threading._shutdown()  # type: ignore[attr-defined]  # as the interpreter's exit does
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # reported in the log, as a fresh interpreter would
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


class Children:
    """The server's children, each known by its request's number from its fork to its reaping:
    the kernel may give a later child the PID of one reaped before."""

    def __init__(self, statuses: Path) -> None:
        self.statuses = statuses
        self._numbers = itertools.count()
        self._live: dict[int, int] = {}  # PID -> request number

    def forked(self, pid: int) -> int:
        """The new child's number, the name of its status file."""
        number = next(self._numbers)
        self._live[pid] = number
        return number

    def exited(self, pid: int, code: int) -> None:
        """Write the status of the live child ``pid`` to ``statuses/NUMBER``, atomically."""
        number = self._live.pop(pid)
        partial = self.statuses / f"{number}.part"
        partial.write_text(str(code))
        partial.rename(self.statuses / str(number))


def _reap(children: Children) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.exited(
            pid, -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        )


def serve(statuses: Path) -> None:
    """Read a request per line on stdin, fork its child, answer its PID and the request's
    number on stdout; reap every child into ``statuses/NUMBER``; end when stdin closes."""
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(Exception):  # the child imports it again, and fails there
            importlib.import_module(name)
    gc.collect()
    gc.freeze()  # the children do not copy the preloaded objects' pages when they collect
    pending = b""
    children = Children(statuses)
    while True:
        readable, _, _ = select.select([0], [], [], 0.05)
        _reap(children)
        if not readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            pid = os.fork()
            if pid == 0:
                _child(json.loads(line))
            os.write(1, f"{pid} {children.forked(pid)}\n".encode())


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
