"""Manifests: what a version holds, and the check that the files still match it.

``manifest.json`` is the root of trust of a version: it lists every other file with its
sha256 and size. A version is complete exactly when its manifest exists, because the
manifest is written last, before the directory is renamed into place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _fs
from ._json import parse_json
from ._limits import StoreLimits
from ._refused import Refused
from ._signing import MANIFEST_PURPOSE, SIGNATURE_FIELD, Signer
from .errors import IntegrityError, SignatureError

__all__ = [
    "MANIFEST_NAME",
    "MAX_VERSION",
    "ReadContext",
    "file_digests",
    "library_versions",
    "now_iso",
    "read_manifest",
    "read_verified_files",
    "sha256_hex",
]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
#: Versions are directory names: at most ten digits (and a C ``int32`` everywhere).
MAX_VERSION = 2**31 - 1
_SAFE_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_FILES = 64
_DISTRIBUTIONS = {
    "numpy": "numpy",
    "sklearn": "scikit-learn",
    "torch": "torch",
    "skops": "skops",
    "safetensors": "safetensors",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
}


@dataclass(frozen=True)
class ReadContext:
    """Where and under which rules a store reads: its root, caps and signing policy.

    ``newest`` is the highest pointer sequence read so far per artifact (its path parts): the
    high-water mark a replayed pointer is refused against (:mod:`model_store._versions`).
    """

    root: Path
    limits: StoreLimits
    signer: Signer
    newest: dict[tuple[str, ...], int] = field(default_factory=dict, compare=False)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_digests(files: Mapping[str, bytes]) -> dict[str, dict[str, Any]]:
    """The ``files`` section of a manifest: ``{filename: {"sha256": ..., "size": ...}}``."""
    return {fn: {"sha256": sha256_hex(data), "size": len(data)} for fn, data in files.items()}


def library_versions() -> dict[str, str | None]:
    """Python and library versions, read from package metadata (nothing gets imported)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in _DISTRIBUTIONS.items():
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def now_iso() -> str:
    """Current UTC time as ISO 8601 with a timezone."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def is_safe_filename(filename: object) -> bool:
    """Plain file name: no separators, no leading dot, no ``..``, no trailing newline."""
    return (
        isinstance(filename, str)
        and _SAFE_FILENAME.fullmatch(filename) is not None
        and ".." not in filename
    )


def is_version(value: object) -> bool:
    """A version number: an ``int`` (not ``bool``) in ``[1, MAX_VERSION]``."""
    return type(value) is int and 1 <= value <= MAX_VERSION


def read_manifest(  # noqa: C901 (one check per field of an untrusted file, read top to bottom)
    ctx: ReadContext, parts: Sequence[str], name: str, version: int, *, kind: str
) -> tuple[dict[str, Any], bool]:
    """Parse ``manifest.json`` of ``parts`` (the version folder), verify it, check its fields.

    Returns the manifest (without its signature field) and whether it was signed and
    verified.

    Checks, in order: a regular file within the JSON caps; its signature (per the store's
    signing policy); then that it describes this kind, name and version and lists files
    with well-formed names, sha256 digests and sizes.
    """

    def refuse(reason: str) -> IntegrityError:
        return IntegrityError(name, version, MANIFEST_NAME, reason, kind=kind)

    def refuse_signature(reason: str) -> SignatureError:
        return SignatureError(name, version, MANIFEST_NAME, reason, kind=kind)

    try:
        with _fs.open_dir(ctx.root, parts) as dir_fd:
            data = _fs.read_regular(dir_fd, MANIFEST_NAME, max_bytes=ctx.limits.max_json_bytes)
    except FileNotFoundError as exc:
        raise refuse("missing") from exc
    except Refused as exc:
        raise refuse(exc.reason) from exc
    except OSError as exc:
        raise refuse(f"unreadable: {exc}") from exc
    try:
        manifest = parse_json(
            data, max_bytes=ctx.limits.max_json_bytes, max_depth=ctx.limits.max_json_depth
        )
    except Refused as exc:
        raise refuse(f"unreadable: {exc}") from exc
    if not isinstance(manifest, dict):
        raise refuse("not a manifest object")
    where = "/".join([*parts, MANIFEST_NAME])
    signed = ctx.signer.verify(MANIFEST_PURPOSE, manifest, where=where, raise_as=refuse_signature)
    if not isinstance(manifest.get("files"), dict):
        raise refuse("not a manifest object")
    if manifest.get("name") != name or manifest.get("version") != version:
        raise refuse(f"describes {manifest.get('name')!r} version {manifest.get('version')!r}")
    if manifest.get("kind", kind) != kind:
        raise refuse(f"describes a {manifest.get('kind')!r}, not a {kind}")
    if not (isinstance(manifest["version"], int) and not isinstance(manifest["version"], bool)):
        raise refuse("version is not an integer")
    files = manifest["files"]
    if len(files) > _MAX_FILES:
        raise refuse(f"lists {len(files)} files")
    for filename, meta in files.items():
        if (
            not is_safe_filename(filename)
            or filename == MANIFEST_NAME
            or not isinstance(meta, dict)
            or not isinstance(meta.get("sha256"), str)
            or _SHA256.fullmatch(meta["sha256"]) is None
            or type(meta.get("size")) is not int
            or meta["size"] < 0
        ):
            raise IntegrityError(name, version, str(filename), "bad manifest entry", kind=kind)
    manifest.pop(SIGNATURE_FIELD, None)
    return manifest, signed


def read_verified_files(
    ctx: ReadContext,
    parts: Sequence[str],
    manifest: Mapping[str, Any],
    *,
    kind: str,
    caps: Mapping[str, int] | None = None,
) -> dict[str, bytes]:
    """Read every file the manifest lists and check its size and sha256; refuse the rest.

    Entries that are not listed (files, folders, links alike) are refused; listed ones must
    be regular files (no links, FIFOs or devices) of the listed size, within their cap
    (``caps[filename]``, e.g. ``max_json_bytes`` for a JSON file, else ``max_file_bytes``),
    checked against the manifest and ``fstat`` before a byte is read. Each file is read once
    into one buffer; the bytes returned are the ones that were hashed, so the caller
    deserialises exactly what was verified (no check-then-reopen race).
    """
    name, version = str(manifest["name"]), int(manifest["version"])
    listed: Mapping[str, Any] = manifest["files"]
    contents: dict[str, bytes] = {}
    try:
        with _fs.open_dir(ctx.root, parts) as dir_fd:
            for entry in sorted(_fs.entries(dir_fd)):
                if entry != MANIFEST_NAME and entry not in listed:
                    raise IntegrityError(
                        name, version, entry, "not listed in the manifest", kind=kind
                    )
            for filename, meta in listed.items():
                size = meta["size"]
                cap = min(ctx.limits.max_file_bytes, (caps or {}).get(filename, 1 << 62))
                if size > cap:
                    raise IntegrityError(
                        name,
                        version,
                        filename,
                        f"the manifest says {size} bytes, over the cap of {cap}",
                        kind=kind,
                    )
                try:
                    data = _fs.read_regular(dir_fd, filename, max_bytes=cap, expected_size=size)
                except FileNotFoundError as exc:
                    raise IntegrityError(name, version, filename, "missing", kind=kind) from exc
                except Refused as exc:
                    raise IntegrityError(name, version, filename, exc.reason, kind=kind) from exc
                if sha256_hex(data) != meta["sha256"]:
                    raise IntegrityError(name, version, filename, kind=kind)
                contents[filename] = data
    except FileNotFoundError as exc:
        raise IntegrityError(
            name, version, MANIFEST_NAME, "version folder vanished", kind=kind
        ) from exc
    except Refused as exc:
        raise IntegrityError(name, version, MANIFEST_NAME, exc.reason, kind=kind) from exc
    return contents
