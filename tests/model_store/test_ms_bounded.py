"""Trial loads in a child process (issue 23, Build 3): a candidate that hangs, allocates past
the cap or kills its child is refused, naming the file and the limit, and this process never
runs it; a hot reload prepares it off the loop, which keeps serving the old version.

The hostile candidates are ONNX graphs the store's own checks let through once their caps are
raised (``max_onnx_loop_trips``, ``max_onnx_elements``): the cost is inside the caps, so only
the child's limits stand between it and the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression

import model_store._store
from model_store import IntegrityError, ModelStore, StoreLimits, UnsafeModelError
from tests.model_store.hostile import (
    onnx_big_zeros,
    onnx_busy_loop,
    onnx_endless_loop,
    swap_version,
    version_dir,
)
from worker.config import settings_from_dict
from worker.inference.reload import Reloader
from worker.inference.serving import build_serving
from worker.inference.store import open_store
from worker.metrics import Metrics

pytestmark = pytest.mark.slow

ROOMY = {"max_onnx_loop_trips": 10**13, "max_onnx_elements": 10**10}  # the checks let them by
X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)


@pytest.fixture
def hostile_store(tmp_path: Path) -> Path:
    """v1 clean; v2 a Loop of 10^12 trips; v3 1.6 GB of zeros; v4 clean (all unpromoted)."""
    root = tmp_path / "store"
    store = ModelStore(root)
    onx = to_onnx(LinearRegression().fit(X, X[:, 0]), X[:1])
    store.publish("m", onx, framework="onnx")
    store.publish_dataset("heldout", {"X": X, "y": X[:, 0]})  # a worker's strategy refits on it
    for data in (onnx_endless_loop(), onnx_big_zeros(), None):
        store.publish("m", onx, framework="onnx", promote=False)
        if data is not None:
            swap_version(root, "m", store.versions("m")[-1], "model.onnx", data)
    return root


def _store(root: Path, **limits: int) -> ModelStore:
    return ModelStore(root, limits=StoreLimits(**{**ROOMY, **limits}))


def test_a_candidate_that_hangs_is_refused_at_the_wall_clock_limit(hostile_store: Path) -> None:
    store = _store(hostile_store, max_load_wall_s=3, max_load_cpu_s=60)
    started = time.monotonic()
    with pytest.raises(UnsafeModelError, match="max_load_wall_s") as refused:
        store.load_bounded([("m", 2, None)])
    assert time.monotonic() - started < 20
    assert refused.value.filename == "model.onnx" and refused.value.version == 2
    assert "within 3 s" in str(refused.value)


def test_a_candidate_that_spins_is_refused_at_the_cpu_limit(hostile_store: Path) -> None:
    store = _store(hostile_store, max_load_cpu_s=2, max_load_wall_s=120)
    with pytest.raises(UnsafeModelError, match="max_load_cpu_s") as refused:
        store.load_bounded([("m", 2, None)])
    assert refused.value.filename == "model.onnx"
    assert "CPU limit of 2 s" in str(refused.value)


def test_a_candidate_that_allocates_past_the_cap_is_refused(hostile_store: Path) -> None:
    store = _store(hostile_store, max_load_bytes=1 << 30)  # 1 GiB; the graph wants 1.6 GB more
    with pytest.raises(UnsafeModelError) as refused:
        store.load_bounded([("m", 3, None)])
    assert refused.value.filename == "model.onnx" and refused.value.version == 3
    assert "1024 MiB" in str(refused.value)
    assert "max_load_bytes" in str(refused.value) or "died by" in str(refused.value)


def test_a_child_killed_by_a_signal_is_a_refusal_naming_the_signal(hostile_store: Path) -> None:
    store = _store(hostile_store, max_load_wall_s=120, max_load_cpu_s=120)
    stop = threading.Event()
    killer = _kill_trial_children(signal.SIGSEGV, stop)
    try:
        with pytest.raises(UnsafeModelError, match="died by SIGSEGV") as refused:
            store.load_bounded([("m", 2, None)])
    finally:
        stop.set()
        killer.join(30)
    assert refused.value.filename == "model.onnx"


def test_a_clean_version_loads_and_the_store_s_own_refusals_come_back_as_they_are(
    hostile_store: Path,
) -> None:
    store = _store(hostile_store)
    (model,) = store.load_bounded([("m", 4, X[:5])])
    assert model.version == 4
    np.testing.assert_allclose(
        model.predict_outputs(X[:5]), store.load("m", 4).predict_outputs(X[:5])
    )
    (version_dir(hostile_store, "m", version=4) / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match=r"model\.onnx") as refused:
        store.load_bounded([("m", 4, None)])
    assert type(refused.value) is IntegrityError and refused.value.version == 4


def test_files_changed_after_the_trial_are_not_loaded(
    hostile_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(hostile_store)
    real = model_store._store.run_trial

    def then_swap(*args: Any, **kwargs: Any) -> Any:
        files = real(*args, **kwargs)
        swap_version(hostile_store, "m", 4, "model.onnx", onnx_endless_loop())  # after the check
        return files

    monkeypatch.setattr(model_store._store, "run_trial", then_swap)
    with pytest.raises(IntegrityError, match="changed since their trial load"):
        store.load_bounded([("m", 4, None)])


def test_a_version_tried_in_this_process_is_not_tried_again_but_still_verified(
    hostile_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model_store._trial

    children: list[int] = []
    real = model_store._trial._run_child

    def counted(store: Any, candidates: Any, threads: int) -> Any:
        children.append(len(candidates))
        return real(store, candidates, threads)

    monkeypatch.setattr(model_store._trial, "_run_child", counted)
    store = _store(hostile_store)
    store.load_bounded([("m", 1, None), ("m", 4, None)])
    store.load_bounded([("m", 4, None), ("m", 1, None)])  # both tried: no child
    _store(hostile_store, max_load_wall_s=299).load_bounded([("m", 1, None)])  # other limits
    store.load_bounded([("m", 1, X[:5])])  # a probe of the caller's is always tried
    assert children == [2, 1, 1]
    (version_dir(hostile_store, "m", version=4) / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match=r"model\.onnx"):
        store.load_bounded([("m", 4, None)])  # the same manifest, other bytes
    assert children == [2, 1, 1]


def _trips_costing(cpu_s: float, width: int) -> int:
    """Trips of :func:`onnx_busy_loop` that cost about ``cpu_s`` of CPU on this machine."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    trips, x = 2000, {"X": np.zeros((8, 4), np.float32)}
    session = ort.InferenceSession(
        onnx_busy_loop(trips, width), options, providers=["CPUExecutionProvider"]
    )
    session.run(None, x)
    spent = []
    for _ in range(3):
        start = time.process_time()
        session.run(None, x)
        spent.append(time.process_time() - start)
    return max(1, round(trips * cpu_s / max(min(spent), 1e-3)))


def test_each_model_of_a_start_up_trial_has_the_cpu_limit_to_itself(tmp_path: Path) -> None:
    """Models that each fit the CPU limit load together, though their sum is past it: a
    trial that shared its CPU limit between the models would refuse one (SIGXCPU)."""
    cpu_s, n_models, width = 2, 6, 16384
    trips = _trips_costing(0.7, width)  # 6 x 0.7 s: past one model's 2 (+1) s
    limits = {"max_onnx_loop_trips": trips + n_models, "max_load_cpu_s": cpu_s}
    store = _store(tmp_path / "store", **limits, max_load_wall_s=300)
    names = [f"busy{i}" for i in range(n_models)]
    for i, name in enumerate(names):  # distinct bytes: none was tried in this process before
        store.publish(name, onnx_busy_loop(trips + i, width), framework="onnx")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    loaded = store.load_bounded([(name, None, None) for name in names], threads=1)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert [model.name for model in loaded] == names
    child_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert child_cpu > 2 * (cpu_s + 1), f"the trials cost only {child_cpu:.1f} s of CPU"


def test_each_model_of_a_start_up_trial_has_the_wall_clock_limit_to_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child is stopped (SIGSTOP) for 5 s in each model's trial, as a slow disk or a busy
    machine would hold it: 3 models take 15 s, past the 12 s limit, and load, since each
    model's own trial took 5 s; a deadline shared between the models would refuse one."""
    import model_store._trial

    pause_s, wall_s, n_models, width = 5.0, 12, 3, 16384
    trips = _trips_costing(0.5, width)  # work under way when the child is stopped
    store = _store(tmp_path / "store", max_onnx_loop_trips=trips + n_models, max_load_wall_s=wall_s)
    names = [f"m{i}" for i in range(n_models)]
    for i, name in enumerate(names):
        store.publish(name, onnx_busy_loop(trips + i, width), framework="onnx")
    paused: list[threading.Thread] = []
    seen: dict[str, list[float]] = {"at": [], "ok": []}

    def hold(pids: list[int]) -> None:
        time.sleep(pause_s)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    class Slowed(model_store._trial.Connection):  # type: ignore[misc]
        """The parent's end: on each "at" (the child starts a model's trial), the child is
        stopped for ``pause_s`` (one pause after another, never overlapping)."""

        def recv_bytes(self, maxlength: int | None = None) -> bytes:
            data: bytes = super().recv_bytes(maxlength)
            kind = json.loads(data)[0]
            if kind == "at":
                for thread in paused:
                    thread.join()
                pids = _children()
                for pid in pids:
                    os.kill(pid, signal.SIGSTOP)
                paused.append(threading.Thread(target=hold, args=(pids,), daemon=True))
                paused[-1].start()
            seen.setdefault(kind, []).append(time.monotonic())
            return data

    # A spare child an earlier test of this process started (model_store._trial.prestart)
    # holds a connection made before the patch: closed, so the trial starts its own.
    with model_store._trial._spare_lock:
        spare, model_store._trial._spare = model_store._trial._spare, None
    if spare is not None:
        spare.close()
    monkeypatch.setattr(model_store._trial, "Connection", Slowed)
    loaded = store.load_bounded([(name, None, None) for name in names], threads=1)
    assert [model.name for model in loaded] == names
    took = [ok - at for at, ok in zip(seen["at"], seen["ok"], strict=True)]
    assert all(pause_s <= t < wall_s for t in took), took  # each held, each within the limit
    assert seen["ok"][-1] - seen["at"][0] > wall_s  # together past it


# -- start-up ------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def _start_worker(
    tmp_path: Path, root: Path, limits: dict[str, int]
) -> subprocess.CompletedProcess[str]:
    """``streamfuse run`` in a child process of its own (6 GiB of address space: on a
    worker that loads the model itself, the allocation fails there, not in this test)."""
    config = tmp_path / "worker.yaml"
    config.write_text(
        json.dumps(
            {
                "store": {"path": str(root), "limits": {**ROOMY, **limits}},
                "models": [{"name": "m"}],
                "strategy": {"name": "weighted_average"},
                "metrics": {"port": 0},
                "kafka": {"bootstrap_servers": "127.0.0.1:9"},
            }
        )
    )

    def bounded() -> None:
        space = 6 << 30
        resource.setrlimit(resource.RLIMIT_AS, (space, resource.RLIM_INFINITY))

    code = (
        "import sys; from worker.cli import main; sys.exit(main(['run', '--config', sys.argv[1]]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=bounded,
    )


@pytest.mark.parametrize(
    ("version", "limits", "reason"),
    [
        (2, {"max_load_wall_s": 5}, "did not finish within 5 s (store.limits.max_load_wall_s)"),
        (3, {"max_load_bytes": 1 << 30}, "1024 MiB"),
    ],
    ids=["hangs", "allocates"],
)
def test_a_hostile_model_stops_start_up_naming_the_file_and_the_limit(
    hostile_store: Path, tmp_path: Path, version: int, limits: dict[str, int], reason: str
) -> None:
    _store(hostile_store).promote("m", version)
    started = time.monotonic()
    try:
        proc = _start_worker(tmp_path, hostile_store, limits)
    except subprocess.TimeoutExpired:
        pytest.fail("start-up hung on the model")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert time.monotonic() - started < 90
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("streamfuse: config key 'models': cannot load 'm'"), proc.stderr[-2000:]
    assert "model.onnx" in last and f"version {version}" in last, last
    assert reason in last, last


# -- hot reload ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "limits", "reason"),
    [
        (2, {"max_load_wall_s": 3}, "max_load_wall_s"),
        (3, {"max_load_bytes": 1 << 30}, "1024 MiB"),
    ],
    ids=["hangs", "allocates"],
)
def test_a_hostile_promotion_is_refused_while_the_loop_serves_the_old_version(
    hostile_store: Path,
    caplog: pytest.LogCaptureFixture,
    version: int,
    limits: dict[str, int],
    reason: str,
) -> None:
    settings = settings_from_dict(
        {
            "store": {"path": str(hostile_store), "limits": {**ROOMY, **limits}},
            "models": [{"name": "m"}],
            "strategy": {"name": "weighted_average"},
            "reload": {"interval_s": 0.2},
        },
        environ={},
    )
    store = open_store(settings.store)
    serving = build_serving(store, settings)
    registry = CollectorRegistry()
    reloader = Reloader(store, settings, Metrics(registry))
    store.promote("m", version)
    refused = {"model": "m", "outcome": "refused"}

    def step() -> bool:
        assert reloader.check(serving, X) is None
        return not registry.get_sample_value("streamfuse_model_reloads_total", refused)

    turns, longest = _serve_while(serving, step)
    assert turns > 10, "the loop did not turn while the candidate was tried"
    assert longest < 1.0, f"a turn of the loop took {longest:.2f} s"
    assert registry.get_sample_value("streamfuse_model_reloads_total", refused) == 1
    assert reason in caplog.text and "model.onnx" in caplog.text
    assert reloader.wait(30) and reloader.check(serving, X) is None  # not retried


def test_a_clean_promotion_is_prepared_off_the_loop_and_swapped_when_ready(
    hostile_store: Path,
) -> None:
    settings = settings_from_dict(
        {
            "store": {"path": str(hostile_store)},
            "models": [{"name": "m"}],
            "strategy": {"name": "weighted_average"},
            "reload": {"interval_s": 0.2},
        },
        environ={},
    )
    store = open_store(settings.store)
    serving = build_serving(store, settings)
    reloader = Reloader(store, settings, Metrics(CollectorRegistry()))
    store.promote("m", 4)
    swapped: list[Any] = []

    def step() -> bool:
        got = reloader.check(serving, X)
        if got is not None:
            swapped.append(got)
        return not swapped

    _serve_while(serving, step)
    assert swapped[0].versions == {"m": 4}
    assert serving.versions == {"m": 1}  # the old snapshot is left as it was


def _serve_while(serving: Any, step: Callable[[], bool], timeout: float = 120) -> tuple[int, float]:
    """Turn a loop (``step``: a reload check, then a prediction by the served version) while
    ``step`` says so; how many turns, and the longest."""
    deadline = time.monotonic() + timeout
    turns, longest = 0, 0.0
    while True:
        assert time.monotonic() < deadline, "the reload never ended"
        started = time.monotonic()
        going = step()
        serving.model_set.models[0].predict_outputs(X[:8])
        longest = max(longest, time.monotonic() - started)
        turns += 1
        if not going:
            return turns, longest
        time.sleep(0.005)


def _kill_trial_children(sig: signal.Signals, stop: threading.Event) -> threading.Thread:
    """A thread that sends ``sig`` to this process's trial children until ``stop`` (a spare
    child waiting for work may be among them: the trial then starts another)."""

    def kill() -> None:
        while not stop.wait(0.05):
            for pid in _children():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def _children() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"model_store._trial" in cmdline:
            found.append(int(entry.name))
    return found
