"""Errors raised by the model store.

Hierarchy::

    ModelStoreError
    ├── ModelNotFoundError      (also LookupError)  no such artifact, version or promoted version
    ├── RollbackError           (also LookupError)  nothing earlier to roll back to
    ├── ConflictError                               another writer changed the active version
    │                                               first (compare-and-set publish)
    ├── IntegrityError          (also ValueError)   a file does not match its manifest, or
    │   │                                           cannot be read or loaded (names the file)
    │   └── SignatureError                          a manifest or pointer is unsigned (when
    │                                               required) or badly signed, or a pointer
    │                                               is older than one already read (replayed)
    ├── UnsafeModelError        (also ValueError)   a file would need untrusted code to load
    ├── PublishError            (also ValueError)   publish arguments disagree with the model
    ├── InvalidSpecError        (also ValueError)   a torch architecture spec is malformed
    ├── InputShapeError         (also ValueError)   a feature batch has the wrong shape
    ├── InvalidNameError        (also ValueError)   a name that cannot be a directory name
    ├── SigningKeyError         (also ValueError)   a key file is missing, malformed or too open
    ├── MissingDependencyError  (also ImportError)  a framework's package is not installed
    └── StoreLayoutError                            the store directory is not laid out as expected

Every constructor takes domain values (names, versions, file names) and builds the message.
Every public :class:`~model_store.ModelStore` method that reads the store raises only these:
any other exception from a loader is wrapped in an ``IntegrityError`` naming the file, with
the original chained (``raise ... from exc``).
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "InputShapeError",
    "IntegrityError",
    "InvalidNameError",
    "InvalidSpecError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelStoreError",
    "PublishError",
    "RollbackError",
    "SignatureError",
    "SigningKeyError",
    "StoreLayoutError",
    "UnsafeModelError",
]


def _where(kind: str, name: str, version: int | None) -> str:
    return f"{kind} {name!r}" if version is None else f"{kind} {name!r} version {version}"


class ModelStoreError(Exception):
    """Root of every error raised by :mod:`model_store`."""


class ModelNotFoundError(ModelStoreError, LookupError):
    """An artifact, one of its versions, or its promoted version does not exist.

    Parameters
    ----------
    name : str
        Artifact name.
    version : int or None
        The version asked for; ``None`` means the promoted (or latest) version.
    kind : str
        ``"model"``, ``"strategy"`` or ``"dataset"``.
    available : list of int or None
        Versions that do exist, listed in the message when given.
    """

    def __init__(
        self,
        name: str,
        version: int | None = None,
        *,
        kind: str = "model",
        available: list[int] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.kind = kind
        self.available = available
        if version is None:
            msg = f"{kind} {name!r} has no promoted version"
            if not available:
                msg = f"{kind} {name!r} not found in the store"
        else:
            msg = f"{_where(kind, name, version)} not found"
        if available:
            msg += f" (available versions: {available})"
        super().__init__(msg)


class RollbackError(ModelStoreError, LookupError):
    """:meth:`ModelStore.rollback` found no previously promoted version."""

    def __init__(self, name: str, *, kind: str = "model") -> None:
        self.name = name
        self.kind = kind
        super().__init__(f"cannot roll back {kind} {name!r}: no previously promoted version")


class IntegrityError(ModelStoreError, ValueError):
    """A stored file is missing, altered, unlisted, malformed, or fails to load.

    ``version`` is None when the file is not inside a version (``active.json``).
    """

    def __init__(
        self,
        name: str,
        version: int | None,
        filename: str,
        reason: str = "sha256 does not match the manifest",
        *,
        kind: str = "model",
    ) -> None:
        self.name = name
        self.version = version
        self.filename = filename
        self.reason = reason
        super().__init__(f"{_where(kind, name, version)}: file {filename!r}: {reason}")


class ConflictError(ModelStoreError):
    """A publish expected ``expected`` to be active and found ``current`` (another writer won).

    Raised by compare-and-set publishes (champion/challenger decisions), so that concurrent
    deciders never overwrite each other: the loser reads the winner's decision instead.
    """

    def __init__(
        self, name: str, expected: int | None, current: int | None, *, kind: str = "decision"
    ) -> None:
        self.name = name
        self.expected = expected
        self.current = current
        super().__init__(
            f"{kind} {name!r}: expected version {expected} to be active, found {current}"
        )


class SignatureError(IntegrityError):
    """A manifest or pointer lacks a required signature, or its signature does not verify, or
    a pointer's sequence is older than one already read (put back, not rolled back)."""


class UnsafeModelError(ModelStoreError, ValueError):
    """Loading (or publishing) a file would need types outside the trusted list.

    ``type_name`` names the offending type when one is known (``"os.system"``); ``reason``
    explains the refusal otherwise (for instance a file that is not a skops archive at all).
    """

    def __init__(
        self,
        name: str,
        version: int | None,
        filename: str,
        *,
        type_name: str | None = None,
        reason: str | None = None,
        kind: str = "model",
    ) -> None:
        self.name = name
        self.version = version
        self.filename = filename
        self.type_name = type_name
        if reason is None:
            reason = f"type {type_name!r} is not in the trusted list"
        self.reason = reason
        super().__init__(f"refusing {_where(kind, name, version)}, file {filename!r}: {reason}")


class PublishError(ModelStoreError, ValueError):
    """The arguments to a ``publish*`` call are invalid or disagree with the model."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"cannot publish {name!r}: {problem}")


class InvalidSpecError(ModelStoreError, ValueError):
    """A torch architecture spec is malformed."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"invalid torch spec, key {key!r}: {problem}")


class InputShapeError(ModelStoreError, ValueError):
    """A feature batch passed to ``predict_outputs`` is not ``(n_events, n_features)``."""

    def __init__(self, name: str, version: int, n_features: int, shape: tuple[int, ...]) -> None:
        self.name = name
        self.version = version
        self.n_features = n_features
        self.shape = shape
        super().__init__(
            f"{_where('model', name, version)} expects an array of shape "
            f"(n_events, {n_features}), got {shape}"
        )


class InvalidNameError(ModelStoreError, ValueError):
    """A name that is not letters, digits and ``_.-``, starting with a letter or digit."""

    def __init__(self, name: object, *, kind: str = "model") -> None:
        self.name = name
        self.kind = kind
        super().__init__(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )


class SigningKeyError(ModelStoreError, ValueError):
    """A signing key file cannot be used (or a key argument is invalid)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"signing key {path}: {problem}")


class MissingDependencyError(ModelStoreError, ImportError):
    """A model needs a framework whose package is not installed; says what to install."""

    def __init__(self, framework: str, package: str, extra: str, name: str | None = None) -> None:
        self.framework = framework
        self.package = package
        self.extra = extra
        where = f"model {name!r} is a {framework} model" if name else f"framework {framework!r}"
        super().__init__(
            f"{where} and needs the {package} package, which is not installed: "
            f"pip install 'streamfuse[{extra}]'"
        )


class StoreLayoutError(ModelStoreError):
    """The store directory holds something it should not (or a manifest is unreadable)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"model store layout error at {path}: {problem}")
