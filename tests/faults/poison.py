"""A corpus of hostile feature events, each with the stage and reason the worker must give.

``corpus(n_features)`` returns one :class:`Poison` per case. Each has a unique key (so its dead
letter can be matched back) except the null-key cases, which have unique values instead. The
reasons are substrings of the ``streamfuse.error`` header.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import orjson

__all__ = ["MAX_EVENT_BYTES", "Poison", "corpus"]

MAX_EVENT_BYTES = 1_048_576  # the worker's default validation.max_event_bytes


@dataclass(frozen=True)
class Poison:
    name: str
    value: bytes | None
    stage: str
    reason: str
    key: bytes | None = b""

    @property
    def record_key(self) -> bytes | None:
        return f"poison-{self.name}".encode() if self.key == b"" else self.key


def _event(event_id: object, features: object, **extra: object) -> bytes:
    return orjson.dumps({"id": event_id, "features": features, **extra})


def _raw_features(event_id: str, literal: str, n_features: int) -> bytes:
    """Features whose first value is ``literal`` verbatim (NaN and friends are not JSON)."""
    rest = ", 0.5" * (n_features - 1)
    return f'{{"id": "{event_id}", "features": [{literal}{rest}]}}'.encode()


def _nested(depth: int, leaf: str = "1.0") -> str:
    return "[" * depth + leaf + "]" * depth


def _padded(doc: bytes, size: int) -> bytes:
    """Still valid JSON, ``size`` bytes long (whitespace padding)."""
    return doc + b" " * (size - len(doc))


def corpus(n_features: int) -> list[Poison]:
    good = [0.5] * n_features
    garbage = random.Random(8).randbytes(512)
    P = Poison
    cases = [
        # -- not JSON at all, or not UTF-8 -----------------------------------------------------
        P("truncated_json", _event("p1", good)[:-7], "decode", "not valid UTF-8 JSON"),
        P("truncated_in_string", b'{"id": "p-tr', "decode", "not valid UTF-8 JSON"),
        P("invalid_utf8", b'{"id": "\xff\xfe", "features": []}', "decode", "not valid UTF-8"),
        P("utf8_overlong", b'{"id": "\xc0\xaf", "features": []}', "decode", "not valid UTF-8"),
        P("lone_continuation", b"\x80\x81\x82", "decode", "not valid UTF-8 JSON"),
        P("lone_surrogate_escape", b'{"id": "\\ud800", "features": []}', "decode", "surrogate"),
        P("utf16", json.dumps({"id": "u16", "features": good}).encode("utf-16"), "decode", "JSON"),
        P("bom", b"\xef\xbb\xbf" + _event("bom", good), "decode", "BOM"),
        P("trailing_garbage", _event("tg", good) + b"xyz", "decode", "not valid UTF-8 JSON"),
        P("two_documents", _event("d1", good) + _event("d2", good), "decode", "JSON"),
        P("random_bytes", garbage, "decode", "not valid UTF-8 JSON"),
        P("nul_bytes", b"\x00" * 64, "decode", "not valid UTF-8 JSON"),
        P("deeply_nested_array", _nested(100_000).encode(), "decode", "depth"),
        P("deeply_nested_object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "decode", "depth"),
        # -- NaN and Infinity: not JSON literals; overflow to infinity ---------------------------
        P("nan_literal", _raw_features("nan", "NaN", n_features), "decode", "JSON"),
        P("infinity_literal", _raw_features("inf", "Infinity", n_features), "decode", "JSON"),
        P("minus_infinity", _raw_features("ninf", "-Infinity", n_features), "decode", "JSON"),
        P("overflow_number", _raw_features("ovf", "1e400", n_features), "decode", "infinity"),
        # -- empty values ----------------------------------------------------------------------
        P("empty_value", b"", "decode", "empty record"),
        P("whitespace_value", b" \n\t ", "decode", "empty record"),
        P("null_value", None, "decode", "null value"),
        P("empty_object", b"{}", "validate", "missing 'id'"),
        P("empty_id", _event("", good), "validate", "1 to 256 characters"),
        P("empty_features", _event("ef", []), "validate", f"expected {n_features} features, got 0"),
        # -- wrong types ------------------------------------------------------------------------
        P("top_level_array", orjson.dumps([good]), "validate", "must be a JSON object, got list"),
        P("top_level_string", b'"evt"', "validate", "must be a JSON object, got str"),
        P("top_level_number", b"42", "validate", "must be a JSON object, got int"),
        P("top_level_null", b"null", "validate", "must be a JSON object"),
        P("id_float", _event(1.5, good), "validate", "'id' must be a string or an integer"),
        P("id_bool", _event(True, good), "validate", "got bool"),
        P("id_null", _event(None, good), "validate", "got null"),
        P("id_object", _event({"x": 1}, good), "validate", "got dict"),
        P("id_beyond_int64", b'{"id": 1%s, "features": []}' % (b"0" * 30), "validate", "float"),
        P("id_too_long", _event("x" * 300, good), "validate", "1 to 256 characters"),
        P("missing_id", orjson.dumps({"features": good}), "validate", "missing 'id'"),
        P("missing_features", orjson.dumps({"id": "mf"}), "validate", "missing 'features'"),
        P("features_string", _event("fs", "0.5,0.5"), "validate", "got str"),
        P("features_null", _event("fn", None), "validate", "got null"),
        P("features_object", _event("fo", {"a": 1.0}), "validate", "no feature names"),
        P("feature_string", _event("fstr", [*good[:3], "1.0", *good[4:]]), "validate", "feature 3"),
        P("feature_bool", _event("fb", [True, *good[1:]]), "validate", "feature 0 must be a"),
        P("feature_null", _event("fnull", [None, *good[1:]]), "validate", "got null"),
        P("feature_list", _event("fl", [[0.5]] * n_features), "validate", "got list"),
        P("too_many_features", _event("tm", [*good, 0.5]), "validate", f"got {n_features + 1}"),
        P("ts_string", _event("tss", good, ts="yesterday"), "validate", "'ts' must be epoch"),
        P("ts_bool", _event("tsb", good, ts=False), "validate", "'ts' must be epoch"),
        P(
            "nested_features",
            f'{{"id": "nf", "features": {_nested(500)}}}'.encode(),
            "validate",
            "got 1",
        ),
        # -- huge arrays and oversized messages -------------------------------------------------
        P("huge_features_array", _event("hf", [0] * 300_000), "validate", "got 300000"),
        P("huge_id_array", _event(list(range(100_000)), good), "validate", "got list"),
        P("oversized_array", _event("oa", [0.5] * 600_000), "validate", "over the limit"),
        P("oversized_2mb", _padded(_event("o2", good), 2_000_000), "validate", "over the limit"),
        P("one_byte_over", _padded(_event("o1", good), MAX_EVENT_BYTES + 1), "validate", "over"),
        # -- null keys: dead-lettered with the key still null ----------------------------------
        P("null_key_truncated", b'{"id": "nk1", "feat', "decode", "not valid UTF-8 JSON", None),
        P("null_key_wrong_type", _event("nk2", "x"), "validate", "got str", None),
    ]
    names = [c.name for c in cases]
    assert len(set(names)) == len(names)
    return cases
