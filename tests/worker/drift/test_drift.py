"""Drift statistics with known answers, the rolling window, and the accuracy estimate on a
stationary and on the drifting synthetic stream (no broker: the monitor takes arrays)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from scipy.stats import ks_2samp
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB

import combiners
from model_store import ModelStore
from tests.worker.conftest import TrainedStore
from worker.config import load_settings
from worker.drift import (
    DriftMonitor,
    ProfileError,
    binned_ks,
    feature_reference,
    output_references,
    profile_arrays,
    psi,
    read_profile,
    sample_rows,
)
from worker.drift.stats import bin_counts, quantile_edges, shares
from worker.inference.serving import build_serving
from worker.metrics import Metrics
from worker.service.reference import open_drift
from worker.tools.datasets import load_dataset

# -- the statistics ----------------------------------------------------------------------------


def test_psi_equals_a_hand_computation() -> None:
    reference = np.repeat(np.arange(4.0), 25)[:, None]  # 0, 1, 2, 3: a quarter each
    edges = quantile_edges(reference, 4)
    np.testing.assert_array_equal(edges, [[0.0, 1.0, 2.0]])
    live = np.repeat(np.arange(4.0), [10, 20, 30, 40])[:, None]
    a = shares(bin_counts(live, edges))
    e = shares(bin_counts(reference, edges))
    np.testing.assert_allclose(a, [[0.1, 0.2, 0.3, 0.4]])
    # sum (a - e) ln(a / e) with e = 0.25 everywhere
    by_hand = (
        -0.15 * math.log(0.4) - 0.05 * math.log(0.8) + 0.05 * math.log(1.2) + 0.15 * math.log(1.6)
    )
    assert psi(a, e)[0] == pytest.approx(by_hand, rel=1e-12)
    assert psi(e, e)[0] == 0.0


def test_psi_floors_an_empty_bin_instead_of_dividing_by_zero() -> None:
    value = psi(np.array([1.0, 0.0]), np.array([0.5, 0.5]))
    by_hand = 0.5 * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert value == pytest.approx(by_hand, rel=1e-12)


def test_ks_equals_scipy_when_the_values_lie_on_the_edges(rng: np.random.Generator) -> None:
    reference = np.repeat(np.arange(10.0), 100)
    edges = quantile_edges(reference[:, None], 10)
    np.testing.assert_array_equal(edges, [np.arange(9.0)])
    e = shares(bin_counts(reference[:, None], edges))
    for p in ([0.1] * 10, [0.3, 0.3] + [0.05] * 8, [0.0] * 9 + [1.0]):
        live = rng.choice(10, size=700, p=p).astype(np.float64)
        a = shares(bin_counts(live[:, None], edges))
        expected = ks_2samp(live, reference).statistic
        assert binned_ks(a, e)[0] == pytest.approx(expected, abs=1e-12)


def test_binned_ks_is_a_lower_bound_of_the_exact_one(rng: np.random.Generator) -> None:
    reference = rng.normal(size=(2000, 3))
    live = rng.normal(loc=[0.0, 0.3, 1.0], size=(500, 3))
    edges = quantile_edges(reference, 10)
    got = binned_ks(shares(bin_counts(live, edges)), shares(bin_counts(reference, edges)))
    exact = [ks_2samp(live[:, j], reference[:, j]).statistic for j in range(3)]
    assert np.all(got <= np.asarray(exact) + 1e-12)
    assert got[2] > 0.3 > got[0]  # a shifted mean shows; no shift does not


# -- the monitor -------------------------------------------------------------------------------


def _monitor(reference: np.ndarray, window: int, min_events: int, **kw) -> DriftMonitor:  # type: ignore[no-untyped-def]
    features = feature_reference(reference)
    labels = [str(j) for j in range(reference.shape[1])]
    return DriftMonitor(features, labels, [], [], window, min_events, **kw)


def test_the_window_holds_the_last_events_only(rng: np.random.Generator) -> None:
    reference = rng.normal(size=(1000, 4))
    rolling = _monitor(reference, window=300, min_events=300)
    batches = [rng.normal(loc=i, size=(130, 4)) for i in range(4)]
    for batch in batches[:-1]:
        assert rolling.observe(batch, None, None, {}) is not None
    got = rolling.observe(batches[-1], None, None, {})
    fresh = _monitor(reference, window=300, min_events=300)
    want = fresh.observe(np.concatenate(batches)[-300:], None, None, {})
    assert got is not None and want is not None
    for key in ("psi", "ks", "out_of_range"):
        np.testing.assert_array_equal(getattr(got, key), getattr(want, key))


def test_out_of_range_share(rng: np.random.Generator) -> None:
    reference = np.column_stack([np.linspace(0, 1, 101), np.linspace(-1, 1, 101)])
    monitor = _monitor(reference, window=100, min_events=10)
    live = np.column_stack([np.r_[np.full(25, 2.0), np.full(75, 0.5)], np.full(100, -1.0)])
    values = monitor.observe(live, None, None, {})
    assert values is not None
    np.testing.assert_array_equal(values.out_of_range, [0.25, 0.0])  # -1 is the minimum: in


def test_gauges_read_nan_until_min_events_then_the_window(
    rng: np.random.Generator, registry: CollectorRegistry
) -> None:
    reference = rng.normal(size=(1000, 3))
    monitor = _monitor(reference, window=400, min_events=200, metrics=Metrics(registry))

    def gauge(feature: str, statistic: str) -> float | None:
        labels = {"feature": feature, "statistic": statistic}
        return registry.get_sample_value("streamfuse_feature_drift", labels)

    assert math.isnan(gauge("2", "psi"))  # type: ignore[arg-type]  # exported before any event
    live = rng.normal(size=(150, 3))
    live[:, 2] = 0.5  # feature 2 turns constant
    monitor.observe(live, None, None, {})
    assert math.isnan(gauge("2", "ks"))  # type: ignore[arg-type]
    values = monitor.observe(live, None, None, {})
    assert values is not None and values.n_events == 300
    assert gauge("2", "psi") == values.psi[2] > 2.0
    assert gauge("2", "ks") == values.ks[2] > 0.4
    assert gauge("0", "psi") == values.psi[0] < 0.25 and gauge("1", "ks") < 0.15  # type: ignore[operator]
    ratio = registry.get_sample_value("streamfuse_out_of_range_ratio", {"feature": "2"})
    assert ratio == 0.0


def test_a_profile_reads_back_and_a_wrong_one_is_refused(rng: np.random.Generator) -> None:
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    P = np.stack([LogisticRegression().fit(X, y).predict_proba(X)])
    features = feature_reference(X)
    outputs = output_references("classification", P, ["lr"], {"soft_vote": P[0]}, y)
    meta, arrays = profile_arrays(features, outputs, None, {"features": 300, "outputs": 300})
    back, back_outputs = read_profile(meta, arrays, 3)
    np.testing.assert_array_equal(back.edges, features.edges)
    assert [(o.scope, o.name) for o in back_outputs] == [("model", "lr"), ("strategy", "soft_vote")]
    assert back_outputs[0].heldout_accuracy == outputs[0].heldout_accuracy
    with pytest.raises(ProfileError, match=r"feature_edges has shape .* for 4 features"):
        read_profile(meta, arrays, 4)
    with pytest.raises(ProfileError, match="no 'feature_low' array"):
        read_profile(meta, {k: v for k, v in arrays.items() if k != "feature_low"}, 3)


def test_the_estimate_is_the_mean_calibrated_confidence(rng: np.random.Generator) -> None:
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] + rng.normal(size=400) > 0).astype(np.int64)
    P = np.stack([LogisticRegression().fit(X, y).predict_proba(X)])
    outputs = output_references("classification", P, ["lr"], {}, y)
    monitor = DriftMonitor(feature_reference(X), ["a", "b"], outputs, ["lr"], 400, 1)
    values = monitor.observe(X, P, np.ones(1, bool), {})
    assert values is not None
    curve = outputs[0].calibration
    assert curve is not None and np.all(np.diff(curve) >= 0)  # isotonic
    expected = np.interp(P[0].max(axis=1), np.linspace(0, 1, 201), curve).mean()
    assert values.estimated_accuracy[0] == pytest.approx(expected, rel=1e-12)
    # calibrated on these very rows: the estimate is their accuracy, up to the grid's steps
    assert values.estimated_accuracy[0] == pytest.approx(outputs[0].heldout_accuracy, abs=0.01)


def test_prediction_drift_of_a_regression_output(rng: np.random.Generator) -> None:
    X = rng.normal(size=(1000, 2))
    value = X @ np.array([1.0, -2.0])
    outputs = output_references("regression", value[None, :, None], ["ridge"], {}, value)
    assert outputs[0].calibration is None and outputs[0].edges is not None
    monitor = DriftMonitor(feature_reference(X), ["a", "b"], outputs, ["ridge"], 500, 500)
    same = monitor.observe(X[:500], value[None, :500, None], None, {})
    shifted = monitor.observe(X[500:], value[None, 500:, None] + 3.0, None, {})
    assert same is not None and shifted is not None
    assert same.prediction_psi[0] < 0.1 < 1.0 < shifted.prediction_psi[0]
    assert np.isnan(shifted.estimated_accuracy[0])  # no accuracy for a regression


# -- estimated accuracy ------------------------------------------------------------------------


def _ensemble(drift: bool) -> tuple[DriftMonitor, np.ndarray, np.ndarray, dict[str, float]]:
    """Two models and their soft vote on the synthetic data set, calibrated on its held-out
    split; the test stream's features, every scope's outputs on it, and its truth."""
    ds = load_dataset("synthetic", drift=drift)
    (X_tr, y_tr), (X_ho, y_ho), (X_te, y_te) = (ds.part(s) for s in ("train", "heldout", "test"))
    models = [
        LogisticRegression(max_iter=1000).fit(X_tr, y_tr),
        GaussianNB().fit(X_tr, y_tr),
    ]
    vote = combiners.get_combiner("soft_vote", task="classification")
    P_ho = np.stack([m.predict_proba(X_ho) for m in models])
    vote.fit(P_ho, y_ho)
    outputs = output_references(
        "classification", P_ho, ["lr", "nb"], {"soft_vote": vote.combine(P_ho)}, y_ho
    )
    monitor = DriftMonitor(
        feature_reference(X_tr), [str(j) for j in range(X_tr.shape[1])], outputs,
        ["lr", "nb"], window=100, min_events=100,
    )  # fmt: skip
    P_te = np.stack([m.predict_proba(X_te) for m in models])
    heldout = {o.name: o.heldout_accuracy for o in outputs}
    return monitor, X_te, np.stack([*P_te, vote.combine(P_te)]), y_te, heldout  # type: ignore[return-value]


def test_the_estimate_matches_the_realised_accuracy_on_a_stationary_stream() -> None:
    monitor, X, outs, y, _ = _ensemble(drift=False)  # type: ignore[misc]
    estimated, realised = [], []
    for start in range(0, len(y), 100):  # windows of 100 events, none shared
        rows = slice(start, start + 100)
        values = monitor.observe(
            X[rows], outs[:2, rows], np.ones(2, bool), {"soft_vote": outs[2, rows]}
        )
        estimated.append(values.estimated_accuracy)
        realised.append((outs[:, rows].argmax(axis=2) == y[rows]).mean(axis=1))
    gap = np.abs(np.mean(estimated, axis=0) - np.mean(realised, axis=0))  # over 600 events
    print("estimated", np.mean(estimated, axis=0), "realised", np.mean(realised, axis=0))
    assert np.all(gap < 0.03), gap  # about 2.5 standard errors of a 600-event accuracy


def test_the_estimate_and_the_drift_gauges_move_before_the_delayed_labels() -> None:
    """The drifting stream (its second half shifted and relabelled): the first batch at which
    the soft vote's estimate falls 5 points under its held-out accuracy, and the features'
    KS crosses 0.2, come before the first batch at which the accuracy over the labels that
    have arrived (200 events late) does; neither moves in the stationary first half."""
    monitor, X, outs, y, heldout = _ensemble(drift=True)  # type: ignore[misc]
    delay, batch, drift_at = 200, 25, len(y) // 2
    bound = heldout["soft_vote"] - 0.05
    correct = outs[2].argmax(axis=1) == y
    first: dict[str, int] = {}
    for end in range(batch, len(y) + 1, batch):
        rows = slice(end - batch, end)
        values = monitor.observe(
            X[rows], outs[:2, rows], np.ones(2, bool), {"soft_vote": outs[2, rows]}
        )
        labelled = correct[max(0, end - delay - 100) : end - delay]
        moved = {
            "estimate": values.estimated_accuracy[2] < bound,
            "ks": values.n_events >= 100 and values.ks.max() > 0.2,
            "labels": len(labelled) == 100 and labelled.mean() < bound,
        }
        for key, now in moved.items():
            if now and key not in first:
                first[key] = end
    print(f"drift at event {drift_at}; first crossing (events seen): {first}")
    assert set(first) == {"estimate", "ks", "labels"}
    assert drift_at < first["ks"] < first["labels"]
    assert drift_at < first["estimate"] < first["labels"]


# -- what the worker watches -------------------------------------------------------------------


def _drift_series(registry: CollectorRegistry) -> dict[str, list[dict[str, str]]]:
    names = ("feature_drift", "out_of_range_ratio", "prediction_drift", "estimated_metric")
    found: dict[str, list[dict[str, str]]] = {n: [] for n in names}
    for family in registry.collect():
        if family.name.removeprefix("streamfuse_") in found:
            for sample in family.samples:
                assert math.isnan(sample.value)  # nothing observed yet
                found[family.name.removeprefix("streamfuse_")].append(sample.labels)
    return found


@pytest.mark.slow
def test_the_worker_watches_every_served_model_and_strategy(
    trained_copy: TrainedStore, caplog: pytest.LogCaptureFixture, registry: CollectorRegistry
) -> None:
    settings = load_settings(trained_copy.config)
    store = ModelStore(trained_copy.root)
    serving = build_serving(store, settings)
    with caplog.at_level(logging.INFO, "streamfuse.worker"):
        monitor = open_drift(store, serving, settings.drift, Metrics(registry))
    assert monitor is not None and "outputs' reference as stored" in caplog.text
    served = [("model", n) for n in serving.names] + [
        ("strategy", s.name) for s in serving.strategies
    ]
    assert [(o.scope, o.name) for o in monitor.outputs] == served
    series = _drift_series(registry)
    n_features = serving.schema.n_features  # wine: 13, under max_features
    assert len(series["feature_drift"]) == 2 * n_features
    assert {s["feature"] for s in series["out_of_range_ratio"]} == {str(j) for j in range(13)}
    assert [(s["scope"], s["name"]) for s in series["prediction_drift"]] == served
    assert [(s["scope"], s["name"]) for s in series["estimated_metric"]] == served

    # A model version the profile never saw: the outputs' reference is made again from the
    # held-out set with the served versions.
    model = store.load("linear")
    store.publish("linear", model.estimator, framework="sklearn")
    reloaded = build_serving(store, settings)
    caplog.clear()
    with caplog.at_level(logging.INFO, "streamfuse.worker"):
        again = open_drift(store, reloaded, settings.drift, Metrics(CollectorRegistry()))
    assert again is not None and "made again from the held-out set" in caplog.text
    for before, after in zip(monitor.outputs, again.outputs, strict=True):
        np.testing.assert_allclose(after.calibration, before.calibration, atol=1e-12)


def test_no_drift_without_a_good_profile(
    trained_copy: TrainedStore, caplog: pytest.LogCaptureFixture, registry: CollectorRegistry
) -> None:
    settings = load_settings(trained_copy.config)
    store = ModelStore(trained_copy.root)
    serving = build_serving(store, settings)
    off = settings.drift.model_copy(update={"enabled": False})
    assert open_drift(store, serving, off, None) is None
    path = trained_copy.root / "_profiles" / "reference" / "1" / "arrays.npz"
    path.write_bytes(path.read_bytes()[:-1])
    with caplog.at_level(logging.WARNING, "streamfuse.worker"):
        assert open_drift(store, serving, settings.drift, Metrics(registry)) is None
    assert "drift off: the store refused the reference profile" in caplog.text
    assert "arrays.npz" in caplog.text
    assert _drift_series(registry) == {
        "feature_drift": [],
        "out_of_range_ratio": [],
        "prediction_drift": [],
        "estimated_metric": [],
    }


def test_rows_drawn_from_a_reference_follow_its_bins_and_stay_in_its_range() -> None:
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.normal(size=2000), rng.exponential(5.0, 2000), np.full(2000, 7.0)])
    reference = feature_reference(X)
    drawn = sample_rows(reference, 20_000, seed=1)
    assert drawn.shape == (20_000, 3) and np.isfinite(drawn).all()
    assert (drawn >= reference.low).all() and (drawn <= reference.high).all()
    np.testing.assert_array_equal(drawn[:, 2], 7.0)  # a constant feature stays constant
    for j in range(2):  # each bin's share as the reference's, within sampling error
        got = shares(bin_counts(drawn[:, j : j + 1], reference.edges[j : j + 1]))[0]
        np.testing.assert_allclose(got, reference.shares[j], atol=0.02)
    np.testing.assert_array_equal(drawn, sample_rows(reference, 20_000, seed=1))
    assert not np.array_equal(drawn, sample_rows(reference, 20_000, seed=2))
