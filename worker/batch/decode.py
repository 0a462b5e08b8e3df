"""Decode and validate a whole batch of feature events into one float array.

The fast path parses every value with orjson and gathers ids and features through C-level
``map`` calls (feature objects through one ``itemgetter`` of the models' names), then checks the
whole feature matrix at once (shape, dtype, finiteness). Only a batch that fails somewhere takes
the slow path, which finds each bad event and its reason (naming the feature names that do not
fit, with the closest known name); the good events of that batch go on.

Event schema (docs/events.md): ``{"id": str | int, "features": [float, ...] |
{"name": float}, "ts": epoch seconds (optional)}``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

__all__ = ["DecodedBatch", "Rejection", "Schema", "decode_batch"]

_get_id = itemgetter("id")
_get_features = itemgetter("features")
_ID_TYPES = frozenset({str, int})
_NUMBER_TYPES = frozenset({int, float})
MAX_ID_CHARS = 256


@dataclass(frozen=True)
class Schema:
    """What the models take: ``n_features`` columns, named when the models were trained so."""

    n_features: int
    feature_names: tuple[str, ...] | None = None

    @cached_property
    def row_of(self) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
        """A feature object's values in the models' order (KeyError when a name is missing)."""
        names = self.feature_names or ()
        if len(names) == 1:
            [name] = names
            return lambda features: (features[name],)
        return itemgetter(*names)


@dataclass(frozen=True)
class Rejection:
    """One event that cannot be predicted: its position in the batch, stage and reason."""

    index: int
    stage: str
    reason: str


@dataclass
class DecodedBatch:
    """The good events of a batch.

    Attributes
    ----------
    index : ndarray of shape (n_good,)
        Positions of the good events in the input batch.
    ids : list of str or int, length n_good
    X : ndarray of shape (n_good, n_features), float64
    ts : ndarray of shape (n_good,), float64; NaN where the event had no ``ts``
    rejections : list of Rejection
    """

    index: np.ndarray
    ids: list[Any]
    X: np.ndarray
    ts: np.ndarray
    rejections: list[Rejection] = field(default_factory=list)


def decode_batch(
    values: Sequence[bytes | None], schema: Schema, max_event_bytes: int = 1 << 20
) -> DecodedBatch:
    """Decode ``values`` (raw Kafka record values) into a :class:`DecodedBatch`."""
    n = len(values)
    if n == 0:
        return _empty(schema)
    fast = _fast_path(values, schema, max_event_bytes)
    if fast is not None:
        return fast
    return _slow_path(values, schema, max_event_bytes)


def _empty(schema: Schema) -> DecodedBatch:
    return DecodedBatch(
        np.zeros(0, dtype=np.int64),
        [],
        np.zeros((0, schema.n_features)),
        np.zeros(0),
    )


def _fast_path(  # noqa: C901 (the hot path: one pass over the batch, its bail-outs inline)
    values: Sequence[bytes | None], schema: Schema, max_event_bytes: int
) -> DecodedBatch | None:
    try:
        if max(map(len, values)) > max_event_bytes:  # type: ignore[arg-type]
            return None
        # numpy would turn true/false among numbers into 1.0/0.0. One byte search over all
        # values joined by a newline (which no ``true`` spans) finds batches that may hold a
        # JSON boolean; only those pay for checking each feature's type (an id "false" is fine).
        joined = b"\n".join(values)  # type: ignore[arg-type]
        maybe_bool = b"true" in joined or b"false" in joined
        docs = list(map(orjson.loads, values))  # type: ignore[arg-type]
        ids = list(map(_get_id, docs))
        features = list(map(_get_features, docs))
        if schema.feature_names is not None and type(features[0]) is dict:
            # Objects in the models' order, by one C-level itemgetter per event; an extra name
            # shows as a length other than the models' (a missing one raises KeyError).
            if set(map(len, features)) != {schema.n_features}:
                return None
            features = list(map(schema.row_of, features))
        if maybe_bool and not set(map(type, chain.from_iterable(features))) <= _NUMBER_TYPES:
            return None
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    if not set(map(type, ids)) <= _ID_TYPES:
        return None
    try:
        X = np.array(features)
    except ValueError:  # ragged
        return None
    if X.ndim != 2 or X.shape[1] != schema.n_features or X.dtype.kind not in "iuf":
        return None
    X = X.astype(np.float64, copy=False)
    if not np.isfinite(X).all():
        return None
    # Long string ids and duplicates are rare; checking both costs one pass over the ids.
    unique_ids = set(ids)
    if len(unique_ids) != len(ids) or "" in unique_ids:
        return None
    if any(isinstance(i, str) and len(i) > MAX_ID_CHARS for i in ids):
        return None
    ts = _timestamps(docs)
    if ts is None:
        return None
    return DecodedBatch(np.arange(len(values)), ids, X, ts)


def _timestamps(docs: list[Any]) -> np.ndarray | None:
    raw = [d.get("ts") for d in docs]
    try:
        ts = np.array([math.nan if t is None else t for t in raw], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if any(isinstance(t, bool) or not isinstance(t, int | float | type(None)) for t in raw):
        return None
    return ts


def _slow_path(
    values: Sequence[bytes | None], schema: Schema, max_event_bytes: int
) -> DecodedBatch:
    index: list[int] = []
    ids: list[Any] = []
    rows: list[list[float]] = []
    ts: list[float] = []
    rejections: list[Rejection] = []
    seen: set[Any] = set()
    for i, value in enumerate(values):
        try:
            doc_id, row, t = _decode_one(value, schema, max_event_bytes)
        except _Reject as reject:
            rejections.append(Rejection(i, reject.stage, reject.reason))
            continue
        if doc_id in seen:
            rejections.append(Rejection(i, "validate", f"duplicate id {doc_id!r} in the batch"))
            continue
        seen.add(doc_id)
        index.append(i)
        ids.append(doc_id)
        rows.append(row)
        ts.append(t)
    X = np.array(rows, dtype=np.float64).reshape(len(rows), schema.n_features)
    return DecodedBatch(np.array(index, dtype=np.int64), ids, X, np.array(ts), rejections)


class _Reject(Exception):
    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason


def _decode_one(
    value: bytes | None, schema: Schema, max_event_bytes: int
) -> tuple[Any, list[float], float]:
    if value is None:
        raise _Reject("decode", "empty record (null value)")
    if len(value) > max_event_bytes:
        raise _Reject(
            "validate", f"event is {len(value)} bytes, over the limit of {max_event_bytes}"
        )
    if not value.strip():
        raise _Reject("decode", "empty record")
    if value[:1] == b"\x00":  # no JSON text starts with NUL: a Schema Registry's framing
        raise _Reject(
            "decode",
            "not valid UTF-8 JSON: it starts with byte 0, as a Confluent-framed record (magic "
            "byte 0, then a schema id) does, and no schema_registry.url is configured to read it",
        )
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise _Reject("decode", f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _Reject("validate", f"event must be a JSON object, got {type(doc).__name__}")
    if "id" not in doc:
        raise _Reject("validate", "missing 'id'")
    doc_id = doc["id"]
    if type(doc_id) not in _ID_TYPES:
        raise _Reject("validate", f"'id' must be a string or an integer, got {_kind(doc_id)}")
    if isinstance(doc_id, str) and not 0 < len(doc_id) <= MAX_ID_CHARS:
        raise _Reject("validate", f"'id' must have 1 to {MAX_ID_CHARS} characters")
    if "features" not in doc:
        raise _Reject("validate", "missing 'features'")
    row = _row(doc["features"], schema)
    t = doc.get("ts")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)):
        raise _Reject("validate", f"'ts' must be epoch seconds, got {_kind(t)}")
    return doc_id, row, math.nan if t is None else float(t)


def _row(features: Any, schema: Schema) -> list[float]:
    names = schema.feature_names
    if isinstance(features, dict):
        if names is None:
            raise _Reject(
                "validate", "'features' is an object but the models have no feature names"
            )
        if len(features) != len(names) or not all(n in features for n in names):
            raise _Reject("validate", _name_problem(features, names))
        values = [features[n] for n in names]
    elif isinstance(features, list):
        if len(features) != schema.n_features:
            raise _Reject(
                "validate",
                f"expected {schema.n_features} features, got {len(features)}",
            )
        values = features
    else:
        raise _Reject("validate", f"'features' must be an array or object, got {_kind(features)}")
    for j, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            what = _feature(j, names, isinstance(features, dict))
            raise _Reject("validate", f"feature {what} must be a number, got {_kind(v)}")
        if not math.isfinite(v):
            what = _feature(j, names, isinstance(features, dict))
            raise _Reject("validate", f"feature {what} is not finite")
    try:
        return [float(v) for v in values]
    except OverflowError:
        raise _Reject("validate", "a feature is too large for a float") from None


def _feature(j: int, names: tuple[str, ...] | None, by_name: bool) -> str:
    """Feature ``j`` as the event named it: by its name for an object, else by its index."""
    if names is None:
        return str(j)
    return _quote(names[j]) if by_name else f"{j} ({_quote(names[j])})"


_MAX_LISTED = 8  # names listed in one reason (a dead letter's header holds 1,000 bytes)


def _name_problem(features: dict[str, Any], names: tuple[str, ...]) -> str:
    """Why a ``features`` object does not fit the models' names: the names it has that they do
    not know, each with the closest missing name, and the missing ones left unexplained."""
    known = set(names)
    unknown = [k for k in features if k not in known]
    missing = [n for n in names if n not in features]
    suggested: dict[str, str] = {}
    for name in unknown[:_MAX_LISTED]:  # difflib is slow: only for the names listed
        close = difflib.get_close_matches(
            name, [m for m in missing if m not in suggested.values()], n=1
        )
        if close:
            suggested[name] = close[0]
    parts = []
    if len(unknown) == 1:
        [name] = unknown
        hint = f" (did you mean {_quote(suggested[name])}?)" if name in suggested else ""
        parts.append(f"'features' names {_quote(name)}, which the models do not know{hint}")
    elif unknown:
        listed = ", ".join(
            _quote(u) + (f" (did you mean {_quote(suggested[u])}?)" if u in suggested else "")
            for u in unknown[:_MAX_LISTED]
        )
        more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
        parts.append(f"'features' names {len(unknown)} the models do not know: {listed}{more}")
    lacking = [m for m in missing if m not in suggested.values()]
    if lacking:
        listed = ", ".join(map(_quote, lacking[:_MAX_LISTED]))
        more = f" and {len(lacking) - _MAX_LISTED} more" if len(lacking) > _MAX_LISTED else ""
        of = f" ({len(lacking)} of the {len(names)} the models take)" if len(lacking) > 1 else ""
        parts.append(("it" if parts else "'features'") + f" lacks {listed}{more}{of}")
    return "; ".join(parts)


def _quote(name: str) -> str:
    return repr(name if len(name) <= 60 else name[:57] + "...")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
