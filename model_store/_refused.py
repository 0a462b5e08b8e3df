"""The store's one internal refusal: a file's content, kind or size is not what it accepts.

Every parser and checker (JSON, UBJSON, zip, trees, ONNX, XGBoost, LightGBM, paths below the
root) raises :class:`Refused`; the store catches this one type and turns it into the public
error of the situation (:class:`~model_store.errors.UnsafeModelError`,
:class:`~model_store.errors.IntegrityError`, :class:`~model_store.errors.StoreLayoutError`,
:class:`~model_store.errors.PublishError`), naming the file and keeping ``reason`` whole.
"""

from __future__ import annotations

__all__ = ["Refused"]


class Refused(ValueError):
    """Refused, with the ``reason`` (what and where inside the file) and, when the raiser
    knows it, the ``file``; ``str()`` is the reason, prefixed by the file when given."""

    def __init__(self, reason: str, *, file: str | None = None) -> None:
        super().__init__(reason if file is None else f"{file}: {reason}")
        self.reason = reason
        self.file = file
