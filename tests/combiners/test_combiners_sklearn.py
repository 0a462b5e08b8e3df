"""Agreement with scikit-learn's VotingClassifier / VotingRegressor on its bundled datasets.

The base models are fitted once; the voting ensembles wrap them in ``FrozenEstimator`` so that
``VotingClassifier.fit`` does not refit them, and both sides see the very same base models.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from combiners import get_combiner

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

WEIGHTS = [None, [1.0, 2.0, 0.5, 1.5], [1, 1, 1, 1], [3, 0, 1, 2]]


def _split(X: np.ndarray, y: np.ndarray, n: int) -> list[np.ndarray]:
    X, _, y, _ = train_test_split(X, y, train_size=n, random_state=0, stratify=None)
    return train_test_split(X, y, test_size=0.4, random_state=0)


def _classifiers() -> list[tuple[str, Any]]:
    return [
        ("rf", RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0)),
        ("hgb", HistGradientBoostingClassifier(max_iter=10, random_state=0)),
        ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))),
        (
            "mlp",
            make_pipeline(
                StandardScaler(),
                MLPClassifier(hidden_layer_sizes=(16,), max_iter=60, random_state=0),
            ),
        ),
    ]


def _regressors() -> list[tuple[str, Any]]:
    return [
        ("rf", RandomForestRegressor(n_estimators=10, max_depth=6, random_state=0)),
        ("hgb", HistGradientBoostingRegressor(max_iter=10, random_state=0)),
        ("ridge", Ridge(alpha=1.0)),
        (
            "mlp",
            make_pipeline(
                StandardScaler(),
                MLPRegressor(hidden_layer_sizes=(16,), max_iter=60, random_state=0),
            ),
        ),
    ]


def _fitted(
    estimators: list[tuple[str, Any]], X: np.ndarray, y: np.ndarray
) -> list[tuple[str, Any]]:
    return [(name, FrozenEstimator(est.fit(X, y))) for name, est in estimators]


@pytest.fixture(scope="module", params=["digits", "breast_cancer"])
def classification(request: pytest.FixtureRequest) -> dict[str, Any]:
    loader = {"digits": load_digits, "breast_cancer": load_breast_cancer}[request.param]
    X, y = loader(return_X_y=True)
    X_train, X_test, y_train, y_test = _split(X, y, 500)
    frozen = _fitted(_classifiers(), X_train, y_train)
    P = np.stack([est.predict_proba(X_test) for _, est in frozen])
    return {
        "frozen": frozen,
        "X": X_test,
        "y": y_test,
        "P": P,
        "X_train": X_train,
        "y_train": y_train,
    }


@pytest.fixture(scope="module")
def regression() -> dict[str, Any]:
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = _split(X, y, 400)
    frozen = _fitted(_regressors(), X_train, y_train)
    P = np.stack([est.predict(X_test) for _, est in frozen])[:, :, None]
    return {
        "frozen": frozen,
        "X": X_test,
        "y": y_test,
        "P": P,
        "X_train": X_train,
        "y_train": y_train,
    }


@pytest.mark.parametrize("weights", WEIGHTS)
def test_soft_vote_matches_voting_classifier(classification: dict[str, Any], weights: Any) -> None:
    d = classification
    voting = VotingClassifier(d["frozen"], voting="soft", weights=weights)
    expected = voting.fit(d["X_train"], d["y_train"]).predict_proba(d["X"])
    combiner = get_combiner("soft_vote", weights=weights).fit(d["P"], d["y"])
    np.testing.assert_allclose(combiner.combine(d["P"]), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_weighted_average_matches_voting_classifier(
    classification: dict[str, Any], weights: Any
) -> None:
    d = classification
    voting = VotingClassifier(d["frozen"], voting="soft", weights=weights)
    expected = voting.fit(d["X_train"], d["y_train"]).predict_proba(d["X"])
    combiner = get_combiner("weighted_average", weights=weights).fit(d["P"], d["y"])
    np.testing.assert_allclose(combiner.combine(d["P"]), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_hard_vote_labels_match_voting_classifier(
    classification: dict[str, Any], weights: Any
) -> None:
    d = classification
    voting = VotingClassifier(d["frozen"], voting="hard", weights=weights)
    expected = voting.fit(d["X_train"], d["y_train"]).predict(d["X"])
    combiner = get_combiner("hard_vote", weights=weights).fit(d["P"], d["y"])
    shares = combiner.combine(d["P"])
    # the classes are 0..n-1, so a column index is the label
    np.testing.assert_array_equal(voting.classes_, np.arange(shares.shape[1]))
    np.testing.assert_array_equal(shares.argmax(axis=1), expected)


def test_hard_vote_agreement_includes_ties(classification: dict[str, Any]) -> None:
    d = classification
    P = d["P"][[0, 2]]  # two equally weighted voters: every disagreement is a tie
    frozen = [d["frozen"][0], d["frozen"][2]]
    labels = P.argmax(axis=2)
    assert np.any(labels[0] != labels[1]), "the data should contain ties"
    voting = VotingClassifier(frozen, voting="hard").fit(d["X_train"], d["y_train"])
    shares = get_combiner("hard_vote").fit(P, d["y"]).combine(P)
    np.testing.assert_array_equal(shares.argmax(axis=1), voting.predict(d["X"]))
    ties = labels[0] != labels[1]
    np.testing.assert_array_equal(shares.argmax(axis=1)[ties], labels[:, ties].min(axis=0))


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("name", ["weighted_average", "weighted_sum"])
def test_regression_matches_voting_regressor(
    regression: dict[str, Any], weights: Any, name: str
) -> None:
    d = regression
    voting = VotingRegressor(d["frozen"], weights=weights)
    expected = voting.fit(d["X_train"], d["y_train"]).predict(d["X"])
    if name == "weighted_sum":  # normalised weights and zero bias make it the weighted mean
        w = np.ones(4) if weights is None else np.asarray(weights, dtype=float)
        combiner = get_combiner(name, weights=w / w.sum(), bias=0.0)
    else:
        combiner = get_combiner(name, weights=weights)
    combined = combiner.fit(d["P"], d["y"]).combine(d["P"])
    np.testing.assert_allclose(combined[:, 0], expected, rtol=1e-12, atol=1e-9)


def test_stacking_matches_sklearn_meta_learner(classification: dict[str, Any]) -> None:
    d = classification
    P, y = d["P"], d["y"]
    combiner = get_combiner("stacking").fit(P, y)
    Z = P.transpose(1, 0, 2).reshape(P.shape[1], -1)
    meta = LogisticRegression(max_iter=1000).fit(Z, y)
    np.testing.assert_allclose(combiner.combine(P), meta.predict_proba(Z), rtol=0, atol=1e-12)


def test_stacking_regression_matches_ridge(regression: dict[str, Any]) -> None:
    d = regression
    P, y = d["P"], d["y"]
    combiner = get_combiner("stacking", meta_params={"alpha": 0.5}).fit(P, y)
    Z = P[:, :, 0].T
    np.testing.assert_allclose(
        combiner.combine(P)[:, 0], Ridge(alpha=0.5).fit(Z, y).predict(Z), rtol=1e-10
    )
