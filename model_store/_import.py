"""Importing a model file from disk through its format, and no pickle ever.

The file is the user's, outside the store, but handed over by whoever wrote it: it is read
once (a regular file, within ``max_file_bytes``) and goes through the same checks as a
stored version before anything of it runs. A pickle (by extension, or by its first bytes
under any extension) is refused with the way to convert it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from ._limits import StoreLimits
from .errors import PublishError, UnsafeModelError

__all__ = ["looks_pickled", "read_model_file", "read_regular"]

_PICKLE_EXTENSIONS = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".sav")


def looks_pickled(data: bytes) -> bool:
    """``data`` opens as a pickle does."""
    # Protocol 2+ pickles open with PROTO; joblib's compressed ones with zlib/gzip/xz/lz4
    # magic around a pickle. Neither is a valid file of any accepted format.
    return data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def read_regular(path: Path, limits: StoreLimits, name: str) -> bytes:
    """The bytes of the regular file at ``path``, within ``max_file_bytes`` (checked on its
    ``fstat`` before reading)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise PublishError(name, f"cannot read {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PublishError(name, f"{path} is not a regular file")
        if st.st_size > limits.max_file_bytes:
            raise PublishError(
                name, f"{path} is {st.st_size} bytes, over the cap of {limits.max_file_bytes}"
            )
        return f.read(limits.max_file_bytes + 1)


def read_model_file(
    path: str | os.PathLike[str],
    framework: str,
    *,
    name: str,
    limits: StoreLimits,
    spec_path: str | os.PathLike[str] | None = None,
) -> tuple[Any, dict[str, Any] | None]:
    """What :meth:`ModelStore.publish` takes for the file at ``path``: ``(model, spec)``.

    scikit-learn archives are loaded under the store's skops allowlist and tree checks (the
    estimator is then re-serialised by publish); torch weights are checked against the spec
    and loaded into a fresh module; XGBoost, LightGBM and ONNX files are passed on as bytes
    (publish checks them).

    Raises
    ------
    PublishError
        Unknown framework, a pickle, an extension the framework does not import, a file
        that cannot be read.
    UnsafeModelError
        The file fails its format's checks (names the file).
    """
    from ._formats import FORMATS  # the torch format reads its spec with this module

    path = Path(path)
    filename = path.name
    fmt = FORMATS.get(framework) if isinstance(framework, str) else None
    if fmt is None:
        raise PublishError(
            name, f"--framework must be one of {', '.join(FORMATS)}, got {framework!r}"
        )
    suffix = path.suffix.lower()
    convert = f"convert it first: {fmt.how_to_convert}"
    if suffix in _PICKLE_EXTENSIONS:
        raise PublishError(
            name,
            f"{filename} is a pickle, which can run any code when loaded; refused, never "
            f"loaded; {convert}",
        )
    if suffix not in fmt.extensions:
        raise PublishError(
            name,
            f"{filename}: a {framework} model is imported from "
            f"{' or '.join(fmt.extensions)}, not {suffix or 'a file without extension'}",
        )
    data = read_regular(path, limits, name)
    if looks_pickled(data):
        raise UnsafeModelError(
            name, None, filename, reason=f"the file is a pickle, never loaded; {convert}"
        )
    return fmt.read_import(
        data, suffix=suffix, filename=filename, name=name, limits=limits, spec_path=spec_path
    )
