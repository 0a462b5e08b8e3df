"""A trial load: untrusted model files loaded and probed in a child process, within limits.

Before the caller loads a version it is loaded, and a probe batch predicted, in a child
process under ``resource`` limits on its address space (``store.limits.max_load_bytes``) and
CPU time (``max_load_cpu_s``), and a wall-clock deadline kept by the parent
(``max_load_wall_s``, then the child is killed). A child that runs out of memory, time or
CPU, or dies by a signal, is a :class:`UnsafeModelError` naming the file and the limit; a
refusal of the store's own checks comes back as the same error the parent would raise. The
child reports the manifest's file digests: the parent then loads only those bytes.

The child is a fresh interpreter (``python -I``), never a fork of the caller: a worker that
already runs Kafka clients' and onnxruntime's threads cannot be forked safely. It is handed
its work in JSON on its stdin and answers in JSON on a pipe of its own (never a pickle: a
child that a hostile file took over must not be able to run code in the parent).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from . import errors
from ._formats import libraries_of
from ._limits import StoreLimits
from ._passed import PassedTrials
from .errors import IntegrityError, ModelStoreError, UnsafeModelError

__all__ = ["Candidate", "StoreArgs", "prestart", "run_trial"]

log = logging.getLogger("model_store")
_MiB = 1 << 20
PROBE_ROWS = 8  # zeros of the declared width when the caller has no probe batch
_CPU_GRACE_S = 5  # between SIGXCPU (the soft limit) and SIGKILL (the hard one)
# How the libraries say an allocation failed (onnxruntime's arena, C++'s std::bad_alloc).
_OUT_OF_MEMORY = ("bad_alloc", "Failed to allocate", "Cannot allocate memory", "out of memory")
_BOOT = (
    "import json, sys; boot = json.loads(sys.stdin.buffer.readline()); sys.path[:] = boot['path'];"
    " from model_store._trial import child_main; child_main(boot)"
)


@dataclass(frozen=True)
class Candidate:
    """One version to try: its name, resolved version, model file and probe batch."""

    name: str
    version: int
    filename: str
    framework: str
    probe: np.ndarray | None = None
    #: Its manifest as read before the trial: a candidate without a probe whose manifest (the
    #: sha256 of every file included) passed a trial in this process, under the same limits,
    #: is not tried again (the same bytes load the same way; a test suite builds many model
    #: sets of one store).
    manifest: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StoreArgs:
    """What the child needs to open the same store."""

    root: Path
    key: bytes | None
    require_signature: bool
    limits: StoreLimits
    #: Where passed trials are remembered across processes (None: in this process only).
    passed: PassedTrials | None = None


def run_trial(
    store: StoreArgs, candidates: Sequence[Candidate], *, threads: int = 0
) -> list[dict[str, Any]]:
    """Load and probe ``candidates`` in one child, in order; their manifests' ``files``.

    Each candidate has the limits to itself: the wall-clock deadline and the CPU time start
    again at each, and a candidate's model is dropped before the next is loaded.

    Raises
    ------
    UnsafeModelError
        The child ran past a limit or died (names the candidate being loaded then).
    ModelStoreError
        The store refused a candidate in the child (the child's own error).
    """
    settings = json.dumps(dataclasses.asdict(store.limits), sort_keys=True)
    known: list[dict[str, Any] | None] = []
    keys: list[tuple[str, str, int] | None] = []
    names: list[str | None] = []  # in ``store.passed``, when not known yet
    for c in candidates:
        key = files = name = None
        if c.manifest is not None and c.probe is None:
            key = (json.dumps(c.manifest, sort_keys=True), settings, threads)
            files = _tried.get(key)
            if files is None and store.passed is not None:
                name = store.passed.key(c.manifest, settings, threads)
                if store.passed.get(name, c.manifest["files"]):
                    files, name = dict(c.manifest["files"]), None
        known.append(files)
        keys.append(key)
        names.append(name)
    todo = [c for c, files in zip(candidates, known, strict=True) if files is None]
    if store.passed is not None and len(todo) < len(candidates):
        remembered = [f"{c.name} v{c.version}" for c in candidates if c not in todo]
        log.info("trial loads passed before, not tried again: %s", ", ".join(remembered))
    tried = iter(_run_child(store, todo, threads) if todo else [])
    found = [files if files is not None else next(tried) for files in known]
    for key, name, files in zip(keys, names, found, strict=True):
        if key is not None:
            _tried[key] = files
        if name is not None and store.passed is not None:
            store.passed.put(name, files)
    return found


_tried: dict[tuple[str, str, int], dict[str, Any]] = {}


def _run_child(
    store: StoreArgs, candidates: Sequence[Candidate], threads: int
) -> list[dict[str, Any]]:
    limits = store.limits
    preload = libraries_of([c.framework for c in candidates])
    child = _take(preload)
    work = {
        "root": str(store.root),
        "key": None if store.key is None else store.key.hex(),
        "require_signature": store.require_signature,
        "limits": dataclasses.asdict(limits),
        "candidates": [
            [c.name, c.version, c.filename, None if c.probe is None else c.probe.tolist()]
            for c in candidates
        ],
        "threads": threads,
    }
    # This process imports the same libraries (trusted code, no model bytes) while the child
    # works: its own load then finds them ready (start-up's trial costs seconds less).
    threading.Thread(target=_import_all, args=(preload,), daemon=True).start()
    deadline = time.monotonic() + limits.max_load_wall_s
    files: list[dict[str, Any]] = []
    at = 0
    try:
        assert child.process.stdin is not None
        try:
            child.process.stdin.write(json.dumps(work).encode())
            child.process.stdin.close()
        except BrokenPipeError:
            pass  # it died at once: told below
        while len(files) < len(candidates):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not child.answers.poll(remaining):
                raise _refusal(
                    candidates[at],
                    f"its trial load did not finish within {limits.max_load_wall_s} s "
                    "(store.limits.max_load_wall_s)",
                )
            try:
                kind, index, value = json.loads(child.answers.recv_bytes(1 << 24))
            except (EOFError, OSError):
                raise _refusal(candidates[at], _death(_wait(child.process), limits)) from None
            at = index
            if kind == "at":  # each candidate has the limits to itself
                deadline = time.monotonic() + limits.max_load_wall_s
            elif kind == "ok":
                files.append(value)
            elif kind == "refused":
                raise _rebuilt(value)
            elif kind == "memory":
                raise _refusal(candidates[at], _memory(limits, value))
    finally:
        child.close()
        # The next hot reload finds its libraries imported. A trial without a caller's probe
        # (start-up's) leaves none: a spare costs a second interpreter's imports, and a
        # process that builds many model sets (fit, tests) would pay them for each.
        if any(c.probe is not None for c in candidates):
            prestart(preload)
    return files


@dataclass
class _Child:
    """A child process waiting for its work on stdin, answering on ``answers``."""

    process: subprocess.Popen[bytes]
    answers: Connection
    preload: tuple[str, ...]

    def close(self) -> None:
        self.answers.close()
        if self.process.poll() is None:
            self.process.kill()
        _wait(self.process)


_spare_lock = threading.Lock()
_spare: _Child | None = None


def prestart(preload: tuple[str, ...]) -> None:
    """Start a spare child that imports ``preload`` while it waits (the interpreter and the
    libraries cost seconds: a trial that finds them ready costs its load alone)."""
    global _spare
    with _spare_lock:
        if _spare is not None and _spare.preload == preload and _spare.process.poll() is None:
            return
        old, _spare = _spare, _start(preload)
    if old is not None:
        old.close()


def _take(preload: tuple[str, ...]) -> _Child:
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is not None:
        if spare.process.poll() is None and set(preload) <= set(spare.preload):
            return spare
        spare.close()
    return _start(preload)


def _start(preload: tuple[str, ...]) -> _Child:
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments; the model file is data to the child)
            [sys.executable, "-I", "-c", _BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            pass_fds=(write_fd,),
            close_fds=True,
        )
    finally:
        os.close(write_fd)
    boot = {"path": list(sys.path), "fd": write_fd, "preload": list(preload)}
    assert process.stdin is not None
    try:
        process.stdin.write(json.dumps(boot).encode() + b"\n")
        process.stdin.flush()
    except BrokenPipeError:
        pass  # it died at once: the trial tells
    return _Child(process, Connection(read_fd, writable=False), preload)


def _wait(child: subprocess.Popen[bytes]) -> int | None:
    try:
        return child.wait(5)
    except subprocess.TimeoutExpired:
        return None


def _refusal(candidate: Candidate, reason: str) -> UnsafeModelError:
    return UnsafeModelError(candidate.name, candidate.version, candidate.filename, reason=reason)


def _memory(limits: StoreLimits, detail: str) -> str:
    return (
        f"its trial load ran out of memory ({detail}) under the address-space limit of "
        f"{limits.max_load_bytes // _MiB} MiB (store.limits.max_load_bytes)"
    )


def _death(exitcode: int | None, limits: StoreLimits) -> str:
    if exitcode is not None and exitcode < 0:
        sig = signal.Signals(-exitcode)
        if sig == signal.SIGXCPU:
            return (
                f"its trial load ran past the CPU limit of {limits.max_load_cpu_s} s "
                "(store.limits.max_load_cpu_s)"
            )
        return (
            f"the child process of its trial load died by {sig.name} (under the limits "
            f"{limits.max_load_bytes // _MiB} MiB of address space, {limits.max_load_cpu_s} s "
            "of CPU)"
        )
    return f"the child process of its trial load exited with status {exitcode}"


def _rebuilt(value: dict[str, Any]) -> ModelStoreError:
    """The child's refusal as the same error type (one of :mod:`model_store.errors`)."""
    cls = getattr(errors, str(value.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, ModelStoreError)):
        cls = ModelStoreError
    error = cls.__new__(cls)
    Exception.__init__(error, str(value.get("message", ""))[:2000])
    for key, item in dict(value.get("attrs", {})).items():
        if isinstance(item, str | int | None):
            setattr(error, str(key), item)
    return error


def _import_all(modules: Sequence[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            pass  # the load says which extra is missing


# -- the child ---------------------------------------------------------------------------------


def child_main(boot: dict[str, Any]) -> None:
    """The child's side: import the libraries, wait for the work, set the limits, then try
    each candidate, answering on ``boot["fd"]``."""
    _import_all(boot["preload"])
    text = sys.stdin.buffer.read()
    if not text:
        return  # a spare no longer wanted
    work = json.loads(text)
    limits = StoreLimits(**work["limits"])
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1  # the imports' share is not the model's
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (limits.max_load_bytes, limits.max_load_bytes))
    n_candidates = len(work["candidates"])
    hard = spent + n_candidates * (limits.max_load_cpu_s + 1) + _CPU_GRACE_S
    conn = Connection(boot["fd"], readable=False)

    def send(kind: str, index: int, value: Any) -> None:
        conn.send_bytes(json.dumps([kind, index, value]).encode())

    from ._store import ModelStore

    store = ModelStore(
        work["root"],
        key=None if work["key"] is None else bytes.fromhex(work["key"]),
        require_signature=work["require_signature"],
        limits=limits,
    )
    candidates = [
        Candidate(name, version, filename, "", None if probe is None else np.asarray(probe))
        for name, version, filename, probe in work["candidates"]
    ]
    for index, candidate in enumerate(candidates):
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = int(used.ru_utime + used.ru_stime) + 1 + limits.max_load_cpu_s
        resource.setrlimit(resource.RLIMIT_CPU, (min(cpu, hard - _CPU_GRACE_S), hard))
        send("at", index, None)
        try:
            send("ok", index, _try(store, candidate, work["threads"]))
        except Exception as exc:  # the store wraps a library's failure: bad_alloc included
            cause = (exc.__cause__ or exc) if isinstance(exc, ModelStoreError) else exc
            text = f"{type(cause).__name__}: {cause}"
            memory = _out_of_memory(cause, text)
            if memory is not None:
                send("memory", index, memory)
            elif isinstance(exc, ModelStoreError):
                send("refused", index, _described(exc))
            else:
                reason = f"its trial load failed ({text[:300]})"
                error = IntegrityError(
                    candidate.name, candidate.version, candidate.filename, reason
                )
                send("refused", index, _described(error))
            return


def _out_of_memory(cause: BaseException, text: str) -> str | None:
    """The library's words for a failed allocation (on one line), else None."""
    text = " ".join(text.split())
    if isinstance(cause, MemoryError):
        return text[:200]
    for marker in _OUT_OF_MEMORY:
        if marker in text:
            return text[text.index(marker) :][:200]
    return None


def _described(exc: ModelStoreError) -> dict[str, Any]:
    attrs = {k: v for k, v in vars(exc).items() if isinstance(v, str | int | None)}
    return {"type": type(exc).__name__, "message": str(exc), "attrs": attrs}


def _try(store: Any, candidate: Candidate, threads: int) -> dict[str, Any]:
    model = store.load(candidate.name, candidate.version, threads=threads)
    probe = candidate.probe
    if probe is None or probe.ndim != 2 or probe.shape[1] != model.n_features:
        probe = np.zeros((PROBE_ROWS, model.n_features))  # the caller tells a width mismatch
    model.predict_outputs(probe)
    return dict(model.manifest["files"])
