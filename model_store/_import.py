"""Importing a model file from disk: which formats each framework takes, and no pickle ever.

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

from ._json import parse_json
from ._limits import StoreLimits
from ._refused import Refused
from .errors import PublishError, UnsafeModelError

__all__ = ["EXTENSIONS", "read_model_file", "read_torch"]

#: The file name endings each framework imports.
EXTENSIONS = {
    "sklearn": (".skops",),
    "torch": (".safetensors",),
    "xgboost": (".json", ".ubj"),
    "lightgbm": (".txt",),
    "onnx": (".onnx",),
}
_PICKLE_EXTENSIONS = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".sav")
_HOW_TO_CONVERT = {
    "sklearn": "skops.io.dump(model, 'model.skops')",
    "torch": "safetensors.torch.save_file(model.state_dict(), 'model.safetensors') plus a "
    "JSON spec (--spec)",
    "xgboost": "booster.save_model('model.json') (or model.get_booster().save_model)",
    "lightgbm": "booster.save_model('model.txt') (or model.booster_.save_model)",
    "onnx": "an exporter such as skl2onnx.to_onnx or torch.onnx.export",
}


def _looks_pickled(data: bytes) -> bool:
    # Protocol 2+ pickles open with PROTO; joblib's compressed ones with zlib/gzip/xz/lz4
    # magic around a pickle. Neither is a valid file of any accepted format.
    return data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def _read(path: Path, limits: StoreLimits, name: str) -> bytes:
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
    from ._formats import FORMATS  # the formats import this module's EXTENSIONS

    path = Path(path)
    filename = path.name
    if framework not in FORMATS:
        raise PublishError(
            name, f"--framework must be one of {', '.join(EXTENSIONS)}, got {framework!r}"
        )
    suffix = path.suffix.lower()
    fmt = FORMATS[framework]
    convert = f"convert it first: {_HOW_TO_CONVERT[framework]}"
    if suffix in _PICKLE_EXTENSIONS:
        raise PublishError(
            name,
            f"{filename} is a pickle, which can run any code when loaded; refused, never "
            f"loaded; {convert}",
        )
    if suffix not in EXTENSIONS[framework]:
        raise PublishError(
            name,
            f"{filename}: a {framework} model is imported from "
            f"{' or '.join(EXTENSIONS[framework])}, not {suffix or 'a file without extension'}",
        )
    data = _read(path, limits, name)
    if _looks_pickled(data):
        raise UnsafeModelError(
            name, None, filename, reason=f"the file is a pickle, never loaded; {convert}"
        )
    return fmt.read_import(
        data, suffix=suffix, filename=filename, name=name, limits=limits, spec_path=spec_path
    )


def read_torch(
    data: bytes,
    spec_path: str | os.PathLike[str] | None,
    *,
    name: str,
    filename: str,
    limits: StoreLimits,
) -> tuple[Any, dict[str, Any]]:
    if spec_path is None:
        raise PublishError(name, "a torch model needs its architecture spec (--spec FILE.json)")
    raw = _read(Path(spec_path), limits, name)
    try:
        spec = parse_json(raw, max_bytes=limits.max_json_bytes, max_depth=limits.max_json_depth)
    except Refused as exc:
        raise PublishError(name, f"{spec_path}: {exc}") from exc
    if not isinstance(spec, dict):
        raise PublishError(name, f"{spec_path}: the spec must be a JSON object")
    from ._torch_io import load_torch
    from ._torch_nets import validate_spec

    clean = validate_spec(spec, limits)
    return load_torch(data, clean, name=name, version=0, filename=filename), clean
