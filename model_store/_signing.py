"""HMAC-SHA256 signatures over manifests and pointers, with a key kept outside the store.

A signed document carries ``"signature": {"alg": "hmac-sha256", "key_id": ..., "mac": ...}``;
the MAC covers :func:`model_store._json.canonical_bytes` of everything else, under a purpose
line (manifest or pointer). A manifest lists every file's sha256, so its signature covers the
whole version; a pointer's covers the artifact kind, name, version and history, so a pointer
cannot be forged or copied from another artifact. An older *signed* pointer of the same
artifact put back is told from a rollback by its sequence number, which a reader compares
with the newest it has read (:mod:`model_store._versions`).

Key files hold 64 hex digits (32 random bytes) and a newline. ``key_id`` is a short hash of
the key, so a refusal can say "signed with another key" without revealing anything.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._json import canonical_bytes
from .errors import SigningKeyError

__all__ = ["MANIFEST_PURPOSE", "POINTER_PURPOSE", "Signer", "generate_key", "read_key"]

log = logging.getLogger("model_store")

MANIFEST_PURPOSE = "streamfuse.manifest/1"
POINTER_PURPOSE = "streamfuse.pointer/1"
SIGNATURE_FIELD = "signature"
_ALG = "hmac-sha256"
_KEY_BYTES = 32
_MAX_KEY_FILE = 4096


def generate_key(path: str | os.PathLike[str]) -> Path:
    """Write a new random key to ``path`` (mode 0600); refuses to overwrite anything.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    SigningKeyError
        ``path`` exists (even as a dangling symlink) or cannot be created.
    """
    target = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as exc:
        raise SigningKeyError(str(target), "already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise SigningKeyError(str(target), f"cannot be created: {exc.strerror}") from exc
    try:
        os.write(fd, (secrets.token_hex(_KEY_BYTES) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def read_key(path: str | os.PathLike[str]) -> bytes:
    """The key in ``path`` (as written by :func:`generate_key`).

    Symlinks are followed (secret mounts use them). The file must be a regular file, not
    writable by group or others, and hold at least 64 hex digits.

    Raises
    ------
    SigningKeyError
        Missing, unreadable, too permissive or malformed.
    """
    source = Path(path)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SigningKeyError(str(source), f"cannot be read: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SigningKeyError(str(source), "is not a regular file")
        if st.st_mode & 0o022:
            raise SigningKeyError(
                str(source), f"is writable by group or others (mode {st.st_mode & 0o777:o})"
            )
        if st.st_size > _MAX_KEY_FILE:
            raise SigningKeyError(str(source), f"is {st.st_size} bytes, not a key file")
        raw = os.read(fd, _MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    text = raw.decode("ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < _KEY_BYTES:
        raise SigningKeyError(
            str(source), f"must hold at least {2 * _KEY_BYTES} hex digits (streamfuse store keygen)"
        )
    return key


def key_id(key: bytes) -> str:
    """A short, non-secret name for a key."""
    return hashlib.sha256(b"streamfuse.key-id\n" + key).hexdigest()[:16]


class Signer:
    """Signs what the store writes and checks what it reads.

    Parameters
    ----------
    key : bytes or None
        No key: nothing is signed and signatures found are not checked.
    require : bool
        Refuse unsigned documents (needs a key).
    """

    def __init__(self, key: bytes | None, require: bool) -> None:
        if key is not None and (not isinstance(key, bytes) or len(key) < 16):
            raise SigningKeyError("(key)", "a signing key must be at least 16 bytes")
        if require and key is None:
            raise SigningKeyError("(key)", "require_signature=True needs a key")
        self._key = key
        self.require = require
        self.key_id = key_id(key) if key is not None else None
        self._warned: set[str] = set()

    def lenient(self) -> Signer:
        """This key, with unsigned documents allowed (to sign them)."""
        return Signer(self._key, False)

    @property
    def key(self) -> bytes | None:
        """The key itself: only for the store's own trial-load child (never logged)."""
        return self._key

    @property
    def status(self) -> str:
        return "unsigned" if self._key is None else "signed"

    @staticmethod
    def _mac(key: bytes, purpose: str, body: Mapping[str, Any]) -> str:
        return hmac.new(key, canonical_bytes(purpose, body), hashlib.sha256).hexdigest()

    def sign(self, purpose: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """``doc`` with a signature field added (unchanged when there is no key)."""
        body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
        if self._key is None:
            return body
        return {
            **body,
            SIGNATURE_FIELD: {
                "alg": _ALG,
                "key_id": self.key_id,
                "mac": self._mac(self._key, purpose, body),
            },
        }

    def verify(self, purpose: str, doc: Mapping[str, Any], *, where: str, raise_as: Any) -> bool:
        """True if ``doc`` carries a valid signature; False if unsigned and that is allowed.

        ``raise_as(reason)`` builds the exception for a refusal (a bad signature whenever
        there is a key; an unsigned document when signatures are required). ``where`` names
        the file in the one warning logged per unsigned file.
        """
        signature = doc.get(SIGNATURE_FIELD)
        if self._key is None:
            return False
        if signature is None:
            if self.require:
                raise raise_as("is not signed, and the store requires signatures")
            if where not in self._warned:
                self._warned.add(where)
                log.warning("%s is not signed; loading it anyway (require_signature is off)", where)
            return False
        if (
            not isinstance(signature, dict)
            or signature.get("alg") != _ALG
            or not isinstance(signature.get("mac"), str)
        ):
            raise raise_as("has a malformed signature field")
        body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
        if hmac.compare_digest(signature["mac"], self._mac(self._key, purpose, body)):
            return True
        if signature.get("key_id") != self.key_id:
            raise raise_as(f"is signed with another key (key id {signature.get('key_id')!r})")
        raise raise_as("has a bad signature: its contents changed after signing")
