"""Feature names at publish that are not the model's own: refused with the counts and what
differs, in the words of the command line; refusals of a file name the user's file."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression

from model_store import ModelStore, PublishError, UnsafeModelError

WINE = load_wine()
X, Y = WINE.data, WINE.target
NAMES = [str(n) for n in WINE.feature_names]  # 13, "malic_acid", "proline", ...


@cache
def _xgboost() -> bytes:
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, Y % 2, feature_names=NAMES), 3)
    return bytes(booster.save_raw("json"))


@cache
def _lightgbm() -> str:
    params = {"objective": "binary", "num_leaves": 4, "verbose": -1}
    data = lgb.Dataset(X, Y % 2, feature_name=NAMES)
    return str(lgb.train(params, data, 3).model_to_string())


def _sklearn() -> object:
    model = LogisticRegression().fit((X - X.mean(axis=0)) / X.std(axis=0), Y)
    model.feature_names_in_ = np.asarray(NAMES, dtype=object)  # as a DataFrame fit sets it
    return model


MODELS = {"xgboost": _xgboost, "lightgbm": _lightgbm, "sklearn": _sklearn}


def _publish(store: ModelStore, framework: str, names: list[str]) -> int:
    schema = {"n_features": len(names), "feature_names": names}
    return store.publish("m", MODELS[framework](), framework=framework, input_schema=schema)


@pytest.mark.parametrize("framework", sorted(MODELS))
def test_a_name_short_says_the_counts_and_the_missing_name(
    store: ModelStore, framework: str
) -> None:
    with pytest.raises(PublishError) as info:
        _publish(store, framework, NAMES[:-1])
    message = str(info.value)
    assert (
        "the model takes 13 features, the feature names given (--feature-names) name 12" in message
    )
    assert "missing 'proline'" in message
    assert "n_features" not in message and "differ from the model's own" not in message


@pytest.mark.parametrize("framework", sorted(MODELS))
def test_a_misspelt_name_is_named_both_ways(store: ModelStore, framework: str) -> None:
    names = ["malic acid" if n == "malic_acid" else n for n in NAMES]
    with pytest.raises(PublishError, match="missing 'malic_acid'; not the model's 'malic acid'"):
        _publish(store, framework, names)


@pytest.mark.parametrize("framework", sorted(MODELS))
def test_the_same_names_in_another_order_give_the_first_position(
    store: ModelStore, framework: str
) -> None:
    with pytest.raises(PublishError, match="another order: position 0 is 'proline', the model's"):
        _publish(store, framework, NAMES[::-1])
    _publish(store, framework, NAMES)
    assert store.load("m").feature_names == NAMES


def test_a_count_alone_says_what_was_declared(store: ModelStore) -> None:
    with pytest.raises(PublishError, match="the model takes 13 features, 12 were declared"):
        store.publish("m", _xgboost(), framework="xgboost", input_schema={"n_features": 12})


def test_an_onnx_refusal_names_the_users_file(store: ModelStore, tmp_path: Path) -> None:
    path = tmp_path / "wine_lr.onnx"
    path.write_bytes(b"\x08\x07" + np.arange(40, dtype=np.uint8).tobytes())
    with pytest.raises(UnsafeModelError) as info:
        store.publish_file("m", path, framework="onnx")
    assert "'wine_lr.onnx'" in str(info.value) and "model.onnx" not in str(info.value)
