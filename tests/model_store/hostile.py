"""Helpers for the hostile-store suite: an attacker's edits, and a child process to run them.

Malicious stores start from small real files made through ``ModelStore.publish`` and are
then altered the way a writer of the store directory would: files rewritten together with
their manifest's sha256 and size, manifests and pointers edited, links and FIFOs planted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import model_store

REPO = Path(model_store.__file__).resolve().parents[1]


def version_dir(root: Path, name: str, kind_dir: str = "", version: int = 1) -> Path:
    base = root / kind_dir / name if kind_dir else root / name
    return base / str(version)


def edit_manifest(
    root: Path, name: str, edit: Callable[[dict[str, Any]], None], kind_dir: str = ""
) -> None:
    path = version_dir(root, name, kind_dir) / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def swap(root: Path, name: str, filename: str, data: bytes, kind_dir: str = "") -> None:
    """Replace a stored file and fix up its manifest entry (sha256 and size)."""
    (version_dir(root, name, kind_dir) / filename).write_bytes(data)

    def fix(manifest: dict[str, Any]) -> None:
        manifest["files"][filename] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }

    edit_manifest(root, name, fix, kind_dir)


def swap_version(root: Path, name: str, version: int, filename: str, data: bytes) -> None:
    """Replace a file of any ``version`` and fix up its manifest entry (sha256 and size)."""
    target = version_dir(root, name, version=version)
    (target / filename).write_bytes(data)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"][filename] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (target / "manifest.json").write_text(json.dumps(manifest))


def rewrite_zip(data: bytes, replace: dict[str, bytes]) -> bytes:
    """The same archive with some members' bytes replaced (stored, like skops writes)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, replace.get(info.filename, src.read(info)))
    return out.getvalue()


def _deflated_zeros(n_units: int, unit: int = 1 << 24) -> bytes:
    """A raw deflate stream of ``n_units * unit`` zero bytes, built in milliseconds.

    After a full flush, deflate output for the same input repeats byte for byte, so one
    compressed unit is repeated instead of compressing gigabytes.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(unit)) + comp.flush(zlib.Z_FULL_FLUSH)
    return block * n_units + comp.flush(zlib.Z_FINISH)


def zip_with_bomb(data: bytes, member: str, n_units: int) -> bytes:
    """``data`` (a zip) with ``member`` replaced by deflated zeros of ``n_units * 16 MiB``.

    Written by hand: Python's zipfile would have to inflate the bytes to write them. The
    CRC is left at 0 (a reader only checks it at the very end, after inflating).
    """
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        members = [(i.filename, src.read(i)) for i in src.infolist()]
    out = io.BytesIO()
    central = []
    for filename, content in members:
        name = filename.encode()
        if filename == member:
            payload, method, crc, size = _deflated_zeros(n_units), 8, 0, n_units << 24
        else:
            payload, method, crc, size = content, 0, zlib.crc32(content), len(content)
        offset = out.tell()
        out.write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(payload),
                size,
                len(name),
                0,
            )
        )
        out.write(name + payload)
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(payload),
                size,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
    start = out.tell()
    for entry in central:
        out.write(entry)
    out.write(
        struct.pack(
            "<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), out.tell() - start, start, 0
        )
    )
    return out.getvalue()


CHILD_PRELUDE = """
import json, os, resource, sys, time, traceback
import numpy, sklearn, torch, skops.io  # imported before the limits are set
import model_store
from model_store import ModelStore

def _vm_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")

HEADROOM = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + HEADROOM,) * 2)
resource.setrlimit(resource.RLIMIT_CPU, (int(sys.argv[3]),) * 2)
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def run(label, call):
    start = time.process_time()
    try:
        call()
        out = {"error": None}
    except BaseException as exc:
        out = {"error": type(exc).__name__, "message": str(exc),
               "store_error": isinstance(exc, model_store.ModelStoreError)}
    out["cpu_s"] = time.process_time() - start
    out["rss_growth"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    print(json.dumps({label: out}), flush=True)
"""


def run_child(
    body: str,
    root: Path,
    *,
    headroom: int = 1 << 30,
    cpu_s: int = 60,
    timeout: float = 120,
) -> tuple[int, dict[str, dict[str, Any]], str]:
    """Run ``body`` (which calls ``run(label, fn)``) in a child with memory and CPU limits.

    The child's address space may grow by ``headroom`` bytes past what its imports took;
    a segfault, a hang (killed at ``timeout``) or a blow-up ends the child, not pytest.
    Returns the exit code (negative: killed by that signal), each label's result, stderr.
    """
    script = CHILD_PRELUDE + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(root), str(headroom), str(cpu_s)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return -9, _results(partial), "timed out"
    return proc.returncode, _results(proc.stdout), proc.stderr


def _results(stdout: str) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            results.update(json.loads(line))
    return results


# -- ONNX graphs built by hand ------------------------------------------------------------------


def onnx_regression(
    nodes: list[Any], *, extra_init: Sequence[Any] = (), functions: Sequence[Any] = ()
) -> bytes:
    """``Y = X @ W + b`` where ``b`` (shape ``[1]``) comes out of ``nodes``."""
    from onnx import TensorProto, helper

    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 1], [1.0, 2.0, 3.0, 4.0])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            *nodes,
            helper.make_node("Add", ["XW", "b"], ["Y"]),
        ],
        "hostile",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", 1])],
        initializer=[w, *extra_init],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
        functions=list(functions),
    )
    model.ir_version = 8
    return model.SerializeToString()


def onnx_big_zeros() -> bytes:
    from onnx import TensorProto, helper

    # 400 million float32 zeros: 1.6 GB from a model of a few hundred bytes.
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [400_000_000])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    return onnx_regression(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["big"], value=zero),
            helper.make_node("ReduceSum", ["big"], ["b"], keepdims=1),
        ],
        extra_init=[shape],
    )


def _loop_body(op: str, width: int) -> Any:
    """A ``Loop`` body: ``v = op(v)`` over ``width`` floats, the condition passed on."""
    from onnx import TensorProto, helper

    return helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node(op, ["v_in"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [width]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [width]),
        ],
    )


def onnx_endless_loop() -> bytes:
    """A ``Loop`` of 10^12 trips of nothing: hangs whoever runs it."""
    from onnx import TensorProto, helper

    trips = helper.make_tensor("trips", TensorProto.INT64, [], [10**12])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    v0 = helper.make_tensor("v0", TensorProto.FLOAT, [1], [0.0])
    return onnx_regression(
        [helper.make_node("Loop", ["trips", "cond", "v0"], ["b"], body=_loop_body("Identity", 1))],
        extra_init=[trips, cond, v0],
    )


def onnx_busy_loop(trips: int, width: int = 4096) -> bytes:
    """A ``Loop`` of ``trips`` trips of ``Sin`` over ``width`` floats: a bounded, steady CPU
    cost (about linear in ``trips``) that ends."""
    from onnx import TensorProto, helper

    count = helper.make_tensor("trips", TensorProto.INT64, [], [trips])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    v0 = helper.make_tensor("v0", TensorProto.FLOAT, [width], [0.5] * width)
    return onnx_regression(
        [
            helper.make_node("Loop", ["trips", "cond", "v0"], ["v"], body=_loop_body("Sin", width)),
            helper.make_node("ReduceSum", ["v"], ["b"], keepdims=1),
        ],
        extra_init=[count, cond, v0],
    )
