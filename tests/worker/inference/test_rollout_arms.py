"""Key-sticky arms: a fixed hash of the key, the same in every process, monotone in the share."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from worker.inference.arms import (
    N_BUCKETS,
    bucket_of,
    event_keys,
    in_canary,
    select,
    threshold,
)

# Computed once and fixed: a change of the hash would move keys between arms mid-rollout.
KNOWN = {b"user-1": 9313, b"user-2": 8025, b"a": 6311, b"b": 3724, b"order-42": 3823, b"": 0}


def test_known_keys_have_fixed_buckets() -> None:
    assert bucket_of(list(KNOWN)).tolist() == list(KNOWN.values())


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_buckets_are_the_same_in_another_process_with_another_hash_seed(seed: str) -> None:
    code = (
        "import json, sys; from worker.inference.arms import bucket_of; "
        "keys = [k.encode() for k in json.loads(sys.argv[1])]; "
        "print(json.dumps([hash(k) for k in keys] + bucket_of(keys).tolist()))"
    )
    keys = [k.decode() for k in KNOWN]
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(keys)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    values = json.loads(out)
    hashes, buckets = values[: len(keys)], values[len(keys) :]
    assert buckets == list(KNOWN.values())
    assert hashes != [hash(k) for k in KNOWN]  # Python's own hash did change


def test_a_key_in_the_canary_stays_in_as_the_share_grows() -> None:
    buckets = bucket_of([f"key-{i}".encode() for i in range(20_000)])
    shares = [0.5, 1, 5, 25, 50, 100]
    masks = [in_canary(buckets, s) for s in shares]
    for smaller, larger in itertools.pairwise(masks):
        assert not (smaller & ~larger).any()
    assert not in_canary(buckets, 0).any() and in_canary(buckets, 100).all()


@pytest.mark.parametrize("share", [1.0, 5.0, 25.0, 50.0])
def test_the_share_of_keys_in_the_canary_is_the_share_asked(share: float) -> None:
    n = 200_000
    keys = [f"{i:x}".encode() for i in range(n)]  # short, similar keys
    got = in_canary(bucket_of(keys), share).mean() * 100
    sd = 100 * np.sqrt(share / 100 * (1 - share / 100) / n)
    assert abs(got - share) < 4 * sd


def test_buckets_are_spread_evenly() -> None:
    counts = np.bincount(
        bucket_of([f"id-{i}".encode() for i in range(200_000)]), minlength=N_BUCKETS
    )
    assert counts.size == N_BUCKETS
    # 20 a bucket: a Poisson-like spread, no bucket empty or crowded
    assert 3.5 < counts.std() < 5.5 and counts.min() > 0 and counts.max() < 50


def test_thresholds_and_event_keys() -> None:
    assert [threshold(s) for s in (0, 0.01, 1, 5, 100, 150, -1)] == [
        0,
        1,
        100,
        500,
        N_BUCKETS,
        N_BUCKETS,
        0,
    ]
    assert event_keys([b"k", None], ["a", 7]) == [b"k", b"7"]


def test_select_takes_the_candidates_rows_in_the_canary() -> None:
    champion = np.zeros((3, 2))
    candidate = np.ones((3, 2))
    out = select(champion, candidate, np.array([True, False, True]))
    assert out.tolist() == [[1, 1], [0, 0], [1, 1]]
