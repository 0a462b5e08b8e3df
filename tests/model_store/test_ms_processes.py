"""Publishing across processes: a publisher killed midway, and two publishers at once.

The child processes publish tiny torch models (importing torch is cheaper than importing
all of scikit-learn, which skops does).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import model_store
from model_store import ModelStore, build_torch_model

pytestmark = pytest.mark.slow

REPO = Path(model_store.__file__).resolve().parents[1]
SPEC = {"arch": "mlp", "n_inputs": 3, "hidden": [2], "n_outputs": 1, "task": "regression"}
PRELUDE = f"""
import sys, time
from pathlib import Path
import model_store
from model_store import ModelStore, build_torch_model
SPEC = {SPEC!r}
"""


def _spawn(tmp_path: Path, name: str, body: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / f"{name}.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _await(condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float) -> None:
    """Poll ``condition`` until true; fail early if the child dies, or at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"child exited with {proc.returncode}: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


SLOW_PUBLISH = """
import os

def slow_write(name, data, *, dir_fd):
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
    os.write(fd, data[: len(data) // 2])  # half the bytes, then hang: a crash mid-publish
    time.sleep(600)

model_store._atomic.write_bytes_durable = slow_write
ModelStore(sys.argv[1]).publish("m", build_torch_model(SPEC), framework="torch", spec=SPEC)
"""


def test_publish_killed_midway_leaves_only_complete_versions(
    store: ModelStore, tmp_path: Path
) -> None:
    store.publish("m", build_torch_model(SPEC), framework="torch", spec=SPEC)
    model_dir = store.root / "m"

    def temp_dir_has_a_file() -> bool:
        return any(p.is_dir() and any(p.iterdir()) for p in model_dir.glob(".tmp-*"))

    proc = _spawn(tmp_path, "slow_publish", SLOW_PUBLISH, str(store.root))
    try:
        _await(temp_dir_has_a_file, proc, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    leftovers = list(model_dir.glob(".tmp-*"))
    assert leftovers, "the killed publisher left its temp dir behind"
    assert store.versions("m") == [1]
    assert store.active_version("m") == 1
    assert store.load("m").version == 1

    # The lock died with the publisher: the next publish proceeds and cleans up.
    assert store.publish("m", build_torch_model(SPEC), framework="torch", spec=SPEC) == 2
    assert store.versions("m") == [1, 2]
    assert not any(p.exists() for p in leftovers)
    assert store.load("m").version == 2


CONCURRENT_PUBLISH = """
root, gate, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
store = ModelStore(root)
net = build_torch_model(SPEC)
ready.touch()
while not gate.exists():  # start both publishers together, after their imports
    time.sleep(0.005)
print(",".join(str(store.publish("m", net, framework="torch", spec=SPEC)) for _ in range(4)))
"""


def test_concurrent_publishers_get_distinct_versions(store: ModelStore, tmp_path: Path) -> None:
    gate = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [
        _spawn(tmp_path, f"publisher{i}", CONCURRENT_PUBLISH, str(store.root), str(gate), str(r))
        for i, r in enumerate(ready)
    ]
    for proc, ready_file in zip(procs, ready, strict=True):
        _await(ready_file.exists, proc, timeout=120)
    gate.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append([int(v) for v in out.strip().split(",")])
    published = sorted(outputs[0] + outputs[1])
    assert published == list(range(1, 9))
    assert store.versions("m") == published
    # Promotion happens under the same lock as the rename, so the last version wins.
    assert store.active_version("m") == 8
    for version in published:
        store.load("m", version)
