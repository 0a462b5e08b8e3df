"""Manifests: what a version holds, and the check that the files still match it.

``manifest.json`` is the root of trust of a version: it lists every other file with its
sha256 and size. A version is complete exactly when its manifest exists, because the
manifest is written last, before the directory is renamed into place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import IntegrityError

__all__ = [
    "MANIFEST_NAME",
    "file_digests",
    "library_versions",
    "now_iso",
    "read_manifest",
    "read_verified_files",
    "sha256_hex",
]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DISTRIBUTIONS = {
    "numpy": "numpy",
    "sklearn": "scikit-learn",
    "torch": "torch",
    "skops": "skops",
    "safetensors": "safetensors",
}


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


def is_safe_filename(filename: str) -> bool:
    """Plain file name: no separators, no leading dot, no ``..``."""
    return bool(_SAFE_FILENAME.match(filename)) and ".." not in filename


def read_manifest(version_dir: Path, name: str, version: int, *, kind: str) -> dict[str, Any]:
    """Parse ``manifest.json`` and check that it describes this directory."""
    path = version_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise IntegrityError(name, version, MANIFEST_NAME, "missing", kind=kind) from exc
    except (OSError, ValueError) as exc:
        raise IntegrityError(name, version, MANIFEST_NAME, f"unreadable: {exc}", kind=kind) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise IntegrityError(name, version, MANIFEST_NAME, "not a manifest object", kind=kind)
    if manifest.get("name") != name or manifest.get("version") != version:
        raise IntegrityError(
            name,
            version,
            MANIFEST_NAME,
            f"describes {manifest.get('name')!r} version {manifest.get('version')!r}",
            kind=kind,
        )
    return manifest


def read_verified_files(
    version_dir: Path, manifest: Mapping[str, Any], *, kind: str
) -> dict[str, bytes]:
    """Read every file the manifest lists and check its sha256; refuse unlisted files.

    The bytes returned are the ones that were hashed, so the caller deserialises exactly
    what was verified (no check-then-reopen race).
    """
    name, version = str(manifest["name"]), int(manifest["version"])
    listed: Mapping[str, Any] = manifest["files"]
    for entry in sorted(p.name for p in version_dir.iterdir()):
        if entry != MANIFEST_NAME and entry not in listed:
            raise IntegrityError(name, version, entry, "not listed in the manifest", kind=kind)
    contents: dict[str, bytes] = {}
    for filename, meta in listed.items():
        if not is_safe_filename(filename) or not isinstance(meta, dict):
            raise IntegrityError(name, version, filename, "bad manifest entry", kind=kind)
        try:
            data = (version_dir / filename).read_bytes()
        except FileNotFoundError as exc:
            raise IntegrityError(name, version, filename, "missing", kind=kind) from exc
        if sha256_hex(data) != meta.get("sha256"):
            raise IntegrityError(name, version, filename, kind=kind)
        contents[filename] = data
    return contents
