"""Caps that match the cost (issue 23, finding 6): a listed file's size is checked against its
own cap and ``fstat`` before a byte is read, and a file read is held once.

Sparse files (no disk blocks) stand in for large ones, listed in a re-sealed manifest as an
attacker who can write the store would; each load runs in a child with an address-space
limit, its peak memory measured.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_store import ModelStore
from tests.model_store.hostile import edit_manifest, run_child, version_dir

pytestmark = pytest.mark.slow

_MiB = 1 << 20
SPARSE_JSON = 1000 * _MiB  # under max_file_bytes (1 GiB), far over max_json_bytes (4 MiB)
SPARSE_ARRAYS = 256 * _MiB
HEADROOM = 400 * _MiB  # one copy of SPARSE_ARRAYS fits, two do not

CHILD = """
from model_store import StoreLimits
store = ModelStore(sys.argv[1])
run("strategy_meta", lambda: store.load_strategy("vote"))
run("decision_record", lambda: store.load_decision("group"))
capped = ModelStore(sys.argv[1], limits=StoreLimits(max_file_bytes=300 << 20))
run("dataset_arrays", lambda: capped.load_dataset("heldout"))
"""


def _sparse(root: Path, name: str, filename: str, size: int, kind_dir: str) -> None:
    """``filename`` made a sparse file of ``size`` bytes, listed so in the manifest."""
    path = version_dir(root, name, kind_dir) / filename
    with open(path, "r+b") as fh:
        fh.truncate(size)

    def listed(manifest: dict[str, Any]) -> None:
        manifest["files"][filename]["size"] = size  # the sha256 is not worth computing

    edit_manifest(root, name, listed, kind_dir)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("caps") / "store"
    store = ModelStore(root)
    store.publish_strategy("vote", {"name": "soft_vote"}, {}, fitted_on={})
    store.publish_decision("group", {"strategy": "soft_vote"}, expected=None)
    store.publish_dataset("heldout", {"X": np.zeros((4, 2))})
    _sparse(root, "vote", "meta.json", SPARSE_JSON, "_strategies")
    _sparse(root, "group", "decision.json", SPARSE_JSON, "_decisions")
    _sparse(root, "heldout", "arrays.npz", SPARSE_ARRAYS, "_datasets")
    code, found, stderr = run_child(CHILD, root, headroom=HEADROOM, cpu_s=30, timeout=90)
    assert os.path.getsize(version_dir(root, "heldout", "_datasets") / "arrays.npz") > 0
    return {"code": code, "results": found, "stderr": stderr}


@pytest.mark.parametrize("case", ["strategy_meta", "decision_record"])
def test_a_json_file_over_its_cap_is_refused_before_reading(
    results: dict[str, Any], case: str
) -> None:
    assert results["code"] == 0, results["stderr"][-2000:]
    result = results["results"][case]
    assert result["error"] == "IntegrityError", result
    assert f"the manifest says {SPARSE_JSON} bytes, over the cap of {4 * _MiB}" in result["message"]
    assert result["rss_growth"] < 16 * _MiB, result  # not a byte of the 1000 MiB read


def test_a_listed_file_is_held_once(results: dict[str, Any]) -> None:
    assert results["code"] == 0, results["stderr"][-2000:]
    result = results["results"]["dataset_arrays"]
    assert result["error"] == "IntegrityError", result
    assert "sha256 does not match" in result["message"], result  # not a MemoryError
    assert result["rss_growth"] < SPARSE_ARRAYS + 64 * _MiB, result
    print(f"peak growth reading a {SPARSE_ARRAYS >> 20} MiB file: {result['rss_growth'] >> 20} MiB")
