"""The bounded UBJSON reader the XGBoost loader checks ``.ubj`` models with."""

from __future__ import annotations

import struct

import pytest
import xgboost as xgb
from sklearn.datasets import load_iris

from model_store._refused import Refused
from model_store._ubjson import parse_ubjson


def test_reads_what_xgboost_writes() -> None:
    X, y = load_iris(return_X_y=True)
    booster = xgb.XGBClassifier(n_estimators=2).fit(X, y).get_booster()
    import json

    doc = parse_ubjson(bytes(booster.save_raw("ubj")), max_depth=64)
    expected = json.loads(booster.save_raw("json"))
    assert doc["learner"]["learner_model_param"] == expected["learner"]["learner_model_param"]
    trees = doc["learner"]["gradient_booster"]["model"]["trees"]
    assert (
        trees[0]["left_children"]
        == expected["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"]
    )


def _key(name: bytes) -> bytes:
    return b"i" + bytes([len(name)]) + name


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{" + _key(b"a") + b"i", "truncated"),
        (b"[$d#L" + struct.pack(">q", 2**40), "more than the bytes left"),
        (b"{" + _key(b"a") + b"T" + _key(b"a") + b"F}", "duplicate key"),
        (b"[" * 100 + b"]" * 100, "nested deeper"),
        (b"H", "unsupported marker"),
        (b"TT", "after the document"),
        (b"[$d[", "without a count"),
    ],
)
def test_refusals(data: bytes, problem: str) -> None:
    with pytest.raises(Refused, match=problem):
        parse_ubjson(data, max_depth=64)
