"""A small serving snapshot for tests of the loop on the in-memory transport: two logistic
regressions ``a`` and ``b`` on three features, combined by a fitted ``soft_vote``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import combiners
from model_store import ModelStore
from worker.config import ModelRef, StrategyRef
from worker.inference.models import ModelSet
from worker.inference.serving import Serving
from worker.inference.strategies import Strategy


def two_model_serving(root: Path) -> Serving:
    """Publish both models into a new store at ``root`` and serve them."""
    from sklearn.linear_model import LogisticRegression

    store = ModelStore(root)
    gen = np.random.default_rng(0)
    X = gen.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    for name, C in (("a", 1.0), ("b", 0.1)):
        store.publish(name, LogisticRegression(C=C).fit(X, y))
    model_set = ModelSet(store, [ModelRef(name="a"), ModelRef(name="b")])
    P = np.stack([fn(X) for fn in model_set.predict_fns])
    combiner = combiners.get_combiner("soft_vote").fit(P, y)
    strategy = Strategy("soft_vote", StrategyRef(name="soft_vote"), combiner, "test", "strategy")
    return Serving(model_set, (strategy,))
