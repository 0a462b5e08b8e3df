"""Key-sticky arms of a rollout: which events the candidate serves.

An event's bucket is a fixed hash of its Kafka key (of its id when it has no key) into
:data:`N_BUCKETS`: CRC-32 (zlib's, the IEEE polynomial: the same on every platform, Python and
process, unlike ``hash()``) finished by MurmurHash3's 32-bit mixer, so that keys differing in
one character spread over the buckets. A bucket below ``share * 100`` (``share`` in percent)
is in the canary; a key in at 5% is therefore in at 25%, on every worker and after restarts.

CRC-32 runs in C over the whole batch (``map(zlib.crc32, keys)``) and the mixer in numpy: about
0.07 µs an event on a 512-event batch, against 0.36 µs for BLAKE2b (8 bytes) per key. The hash
only spreads keys; it is not meant to hide them.

Examples
--------
>>> bucket_of([b"user-1", b"user-2"]).tolist()
[9313, 8025]
>>> in_canary(bucket_of([b"user-1", b"user-2"]), 90.0).tolist()
[False, True]
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

__all__ = ["ARMS", "N_BUCKETS", "bucket_of", "event_keys", "in_canary", "select", "threshold"]

N_BUCKETS = 10_000
#: The ``arm`` of a published prediction: index 0 champion, 1 candidate.
ARMS = ("champion", "candidate")


def event_keys(keys: Sequence[bytes | None], ids: Sequence[object]) -> list[bytes]:
    """Each event's Kafka key, or its id as text when it has none (as the output key is)."""
    return [k if k is not None else str(i).encode() for k, i in zip(keys, ids, strict=True)]


def bucket_of(keys: Sequence[bytes]) -> np.ndarray:
    """The bucket of each key, ndarray of shape (n,), int64 in ``[0, N_BUCKETS)``."""
    h = np.fromiter(map(zlib.crc32, keys), dtype=np.uint32, count=len(keys))
    # MurmurHash3 fmix32 (uint32 arithmetic wraps, as the C does)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return (h % np.uint32(N_BUCKETS)).astype(np.int64)


def threshold(share: float) -> int:
    """Buckets in the canary at ``share`` percent (0 to 100, hundredths of a percent)."""
    return round(min(max(share, 0.0), 100.0) * N_BUCKETS / 100)


def in_canary(buckets: np.ndarray, share: float) -> np.ndarray:
    """Bool mask, shape (n,): the events the candidate serves at ``share`` percent."""
    return np.asarray(buckets < threshold(share))


def select(champion: np.ndarray, candidate: np.ndarray, canary: np.ndarray) -> np.ndarray:
    """The published outputs: the candidate's rows where ``canary``, the champion's elsewhere.

    Parameters
    ----------
    champion, candidate : ndarray of shape (n_events, n_outputs)
    canary : ndarray of bool, shape (n_events,)
    """
    return np.where(canary[:, None], candidate, champion)
