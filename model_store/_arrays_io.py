"""Named numpy arrays as an uncompressed ``.npz``, read with ``allow_pickle=False``.

Used for fitted strategy state and held-out data sets. Object arrays (the only kind that
needs pickle) are refused on write, and a file that would need pickle is refused on read.
String arrays (``<U``) are fine: they are plain fixed-width data.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping

import numpy as np

from ._limits import StoreLimits
from ._refused import Refused
from ._zipcheck import check_zip
from .errors import PublishError, UnsafeModelError

__all__ = ["dump_arrays", "load_arrays"]

_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def dump_arrays(arrays: Mapping[str, np.ndarray], *, name: str) -> bytes:
    """Serialise ``arrays`` to npz bytes; keys must be simple names, dtypes not object."""
    clean: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise PublishError(name, f"array name {key!r} must match {_KEY.pattern}")
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise PublishError(name, f"array {key!r} has dtype object, which needs pickle")
        clean[key] = array
    buffer = io.BytesIO()
    np.savez(buffer, **clean)  # type: ignore[arg-type]
    return buffer.getvalue()


def load_arrays(
    data: bytes,
    *,
    name: str,
    version: int,
    filename: str,
    kind: str,
    limits: StoreLimits | None = None,
) -> dict[str, np.ndarray]:
    """Read every array of an npz archive eagerly, never unpickling.

    Members are bounded first (:func:`check_zip`): their declared sizes within
    ``limits.max_inflated_bytes``, every one a ``.npy`` whose header fits its data.
    """
    try:
        check_zip(data, limits or StoreLimits()).close()
    except Refused as exc:
        raise UnsafeModelError(
            name, version, filename, reason=f"not a plain npz archive: {exc}", kind=kind
        ) from exc
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except Exception as exc:  # ValueError for object arrays, BadZipFile, ...
        raise UnsafeModelError(
            name, version, filename, reason=f"not a plain npz archive: {exc}", kind=kind
        ) from exc
