"""The live-accuracy join: caching, early labels, eviction, counting, and rolling metrics that
agree with scikit-learn on exactly the rows in the window."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    mean_absolute_error,
    root_mean_squared_error,
)

from worker.accuracy.labels import LabelJoiner
from worker.batch.layout import Block, OutputLayout
from worker.config import LabelsSettings
from worker.metrics import Metrics

CLASSES = ("cat", "dog", "eel")
MODELS = ["m0", "m1"]
STRATEGIES = ["avg"]
CLASSIFICATION = OutputLayout("classification", (Block("", "classification", 0, 3, CLASSES),))
REGRESSION = OutputLayout("regression", (Block("", "regression", 0, 1),))
MULTITASK = OutputLayout(
    "multitask",
    (Block("kind", "classification", 0, 2, (0, 1)), Block("size", "regression", 2, 3)),
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_joiner(
    layout: OutputLayout = CLASSIFICATION, clock: Clock | None = None, **settings: Any
) -> tuple[LabelJoiner, CollectorRegistry]:
    registry = CollectorRegistry()
    joiner = LabelJoiner(
        layout,
        MODELS,
        STRATEGIES,
        LabelsSettings(**{"early_label_wait_s": 0.0, **settings}),
        Metrics(registry),
        clock=clock or Clock(),
    )
    return joiner, registry


def batch(
    rng: np.random.Generator, ids: list[Any], n_outputs: int = 3, available: Any = (True, True)
) -> tuple[list[Any], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    P = rng.dirichlet(np.ones(n_outputs), size=(len(MODELS), len(ids)))
    mask = np.asarray(available, dtype=bool)
    P[~mask] = np.nan
    return ids, P, mask, {"avg": np.nanmean(P, axis=0)}


def labels(pairs: list[tuple[Any, Any]], key: str = "label") -> list[bytes]:
    return [orjson.dumps({"id": i, key: v}) for i, v in pairs]


def counter(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(f"streamfuse_{name}_total") or 0.0


def test_join_returns_the_rows_of_the_labelled_events(rng: np.random.Generator) -> None:
    joiner, registry = make_joiner()
    ids, P, available, outputs = batch(rng, [f"e{i}" for i in range(10)])
    assert joiner.add_predictions(ids, P, available, outputs) is None
    joined = joiner.add_labels(labels([("e7", "eel"), ("nope", "cat"), ("e2", "dog")]))
    assert joined is not None
    assert joined.ids == ["e7", "e2"]
    np.testing.assert_array_equal(joined.P, P[:, [7, 2]])
    np.testing.assert_array_equal(joined.outputs["avg"], outputs["avg"][[7, 2]])
    np.testing.assert_array_equal(joined.y, [2, 1])
    assert joined.available.shape == (2, 2) and joined.available.all()
    assert counter(registry, "labels_joined") == 2
    assert counter(registry, "labels_unmatched") == 1
    assert joiner.n_cached == 8  # a joined prediction leaves the cache


def test_integer_ids_and_numeric_classes(rng: np.random.Generator) -> None:
    layout = OutputLayout("classification", (Block("", "classification", 0, 3, (0, 1, 2)),))
    joiner, _ = make_joiner(layout)
    joiner.add_predictions(*batch(rng, [1, 2, 3]))
    joined = joiner.add_labels(labels([(3, 2.0), (1, 0)]))
    assert joined is not None and joined.ids == [3, 1]
    np.testing.assert_array_equal(joined.y, [2, 0])
    assert joined.y.dtype == np.int64


def test_early_label_waits_for_its_prediction(rng: np.random.Generator) -> None:
    clock = Clock()
    joiner, registry = make_joiner(clock=clock, early_label_wait_s=5.0)
    assert joiner.add_labels(labels([("late", "dog"), ("never", "cat")])) is None
    assert joiner.n_pending == 2
    clock.now += 4.0
    ids, P, available, outputs = batch(rng, ["x", "late"])
    joined = joiner.add_predictions(ids, P, available, outputs)
    assert joined is not None and joined.ids == ["late"]
    np.testing.assert_array_equal(joined.P, P[:, [1]])
    np.testing.assert_array_equal(joined.y, [1])
    assert counter(registry, "labels_joined") == 1
    assert counter(registry, "labels_unmatched") == 0
    clock.now += 1.5  # "never" has waited 5.5 s
    joiner.add_labels([])
    assert joiner.n_pending == 0
    assert counter(registry, "labels_unmatched") == 1


def test_invalid_labels_count_as_unmatched(rng: np.random.Generator) -> None:
    joiner, registry = make_joiner()
    joiner.add_predictions(*batch(rng, ["a", "b", "c"]))
    bad = [
        b"not json",
        b"[1, 2]",
        None,
        orjson.dumps({"label": "cat"}),  # no id
        orjson.dumps({"id": True, "label": "cat"}),  # a bool is not an id
        orjson.dumps({"id": "a", "label": "cow"}),  # unknown class
        orjson.dumps({"id": "b", "label": ["cat"]}),  # unhashable
        orjson.dumps({"id": "c"}),  # no label
    ]
    assert joiner.add_labels(bad) is None
    assert counter(registry, "labels_unmatched") == len(bad)
    assert joiner.n_cached == 3  # still waiting for a valid label


def test_eviction_by_size_drops_whole_batches_oldest_first(rng: np.random.Generator) -> None:
    joiner, registry = make_joiner(join_max_entries=5)
    joiner.add_predictions(*batch(rng, ["a0", "a1", "a2"]))
    joiner.add_predictions(*batch(rng, ["b0", "b1"]))
    assert joiner.n_cached == 5 and counter(registry, "labels_evicted") == 0
    joiner.add_predictions(*batch(rng, ["c0"]))
    assert joiner.n_cached == 3
    assert counter(registry, "labels_evicted") == 3
    assert joiner.add_labels(labels([("a1", "cat")])) is None
    joined = joiner.add_labels(labels([("b1", "cat"), ("c0", "dog")]))
    assert joined is not None and joined.ids == ["b1", "c0"]
    assert counter(registry, "labels_unmatched") == 1


def test_eviction_by_age(rng: np.random.Generator) -> None:
    clock = Clock()
    joiner, registry = make_joiner(clock=clock, join_max_age_s=10.0)
    joiner.add_predictions(*batch(rng, ["old0", "old1"]))
    clock.now += 6
    joiner.add_predictions(*batch(rng, ["new"]))
    clock.now += 5  # the first batch is 11 s old, the second 5 s
    assert joiner.add_labels(labels([("old0", "cat"), ("new", "dog")])) is not None
    assert counter(registry, "labels_evicted") == 2
    assert counter(registry, "labels_unmatched") == 1  # old0: its prediction was gone
    assert joiner.n_cached == 0


def test_joined_rows_do_not_count_as_evicted(rng: np.random.Generator) -> None:
    clock = Clock()
    joiner, registry = make_joiner(clock=clock, join_max_age_s=1.0)
    joiner.add_predictions(*batch(rng, ["a", "b"]))
    joiner.add_labels(labels([("a", "cat"), ("b", "dog")]))
    clock.now += 2
    joiner.add_labels([])
    assert counter(registry, "labels_evicted") == 0


def test_redelivered_prediction_replaces_the_older_one(rng: np.random.Generator) -> None:
    joiner, _ = make_joiner()
    joiner.add_predictions(*batch(rng, ["a", "b"]))
    ids, P, available, outputs = batch(rng, ["b", "c"])
    joiner.add_predictions(ids, P, available, outputs)
    assert joiner.n_cached == 3
    joined = joiner.add_labels(labels([("b", "eel")]))
    assert joined is not None
    np.testing.assert_array_equal(joined.P, P[:, [0]])


def test_unavailable_model_is_skipped_and_groups_split_by_availability(
    rng: np.random.Generator,
) -> None:
    joiner, _ = make_joiner()
    joiner.add_predictions(*batch(rng, ["a", "b"]))
    joiner.add_predictions(*batch(rng, ["c", "d"], available=(False, True)))
    joined = joiner.add_labels(labels([("a", "cat"), ("c", "dog"), ("b", "eel"), ("d", "cat")]))
    assert joined is not None
    np.testing.assert_array_equal(joined.available[0], [True, False, True, False])
    groups = sorted(joined.groups(), key=lambda g: int(g[2].sum()))
    assert [g[2].tolist() for g in groups] == [[False, True], [True, True]]
    np.testing.assert_array_equal(groups[0][1], [1, 0])
    np.testing.assert_array_equal(groups[1][1], [0, 2])
    assert joiner.window_contents("model", "m0").truth.tolist() == [0, 2]
    assert joiner.window_contents("model", "m1").truth.tolist() == [0, 1, 2, 0]
    snapshot = joiner.rolling_snapshot()
    assert np.isfinite(list(snapshot.values())).all()


def test_rolling_classification_metrics_agree_with_sklearn(rng: np.random.Generator) -> None:
    window = 50
    joiner, registry = make_joiner(window=window)
    fed_P, fed_y, fed_ok = [], [], []
    for b in range(4):
        ids = [f"{b}-{i}" for i in range(23)]
        avail = (b != 2, True)
        _, P, available, outputs = batch(rng, ids, available=avail)
        joiner.add_predictions(ids, P, available, outputs)
        y = rng.integers(0, 3, len(ids))
        joiner.add_labels(labels([(i, CLASSES[c]) for i, c in zip(ids, y, strict=True)]))
        fed_P.append(np.concatenate([P, outputs["avg"][None]]))
        fed_y.append(y)
        fed_ok.append(np.repeat(np.r_[available, True][:, None], len(ids), axis=1))
    P_all = np.concatenate(fed_P, axis=1)[:, -window:]
    y_all = np.concatenate(fed_y)[-window:]
    ok_all = np.concatenate(fed_ok, axis=1)[:, -window:]
    snapshot = joiner.rolling_snapshot()
    for s, (scope, name) in enumerate([("model", "m0"), ("model", "m1"), ("strategy", "avg")]):
        rows = joiner.window_contents(scope, name)
        np.testing.assert_array_equal(rows.truth, y_all[ok_all[s]])
        assert rows.scores is not None
        np.testing.assert_allclose(rows.scores, P_all[s][ok_all[s]])
        want = {
            "accuracy": accuracy_score(rows.truth, rows.pred),
            "log_loss": log_loss(rows.truth, rows.scores, labels=[0, 1, 2]),
            "brier": brier_score_loss(rows.truth, rows.scores, labels=[0, 1, 2]),
        }
        assert accuracy_score(rows.truth, rows.pred) == accuracy_score(
            y_all[ok_all[s]], P_all[s][ok_all[s]].argmax(axis=1)
        )
        for metric, value in want.items():
            assert snapshot[(scope, name, metric)] == pytest.approx(value, rel=1e-9)
            gauge = registry.get_sample_value(
                "streamfuse_rolling_metric", {"scope": scope, "name": name, "metric": metric}
            )
            assert gauge == pytest.approx(value, rel=1e-9)
    assert len(joiner.window_contents("model", "m0").truth) == window - 23  # b=2 not scored


def test_rolling_regression_metrics_agree_with_sklearn(rng: np.random.Generator) -> None:
    window = 30
    joiner, _ = make_joiner(REGRESSION, window=window)
    ys, preds = [], []
    for b in range(3):
        ids = [f"{b}-{i}" for i in range(17)]
        P = rng.normal(size=(2, 17, 1))
        outputs = {"avg": P.mean(axis=0)}
        joiner.add_predictions(ids, P, np.ones(2, dtype=bool), outputs)
        y = rng.normal(size=17)
        joined = joiner.add_labels(labels(list(zip(ids, y.tolist(), strict=True))))
        assert joined is not None and joined.y.dtype == np.float64
        ys.append(y)
        preds.append(P[1, :, 0])
    y_all, pred_all = np.concatenate(ys)[-window:], np.concatenate(preds)[-window:]
    rows = joiner.window_contents("model", "m1")
    np.testing.assert_allclose(rows.truth, y_all)
    np.testing.assert_allclose(rows.pred, pred_all)
    snapshot = joiner.rolling_snapshot()
    assert snapshot[("model", "m1", "mae")] == pytest.approx(mean_absolute_error(y_all, pred_all))
    assert snapshot[("model", "m1", "rmse")] == pytest.approx(
        root_mean_squared_error(y_all, pred_all)
    )
    assert {m for _, _, m in snapshot} == {"mae", "rmse"}


def test_multitask_metrics_per_task(rng: np.random.Generator) -> None:
    joiner, _ = make_joiner(MULTITASK)
    ids = [f"e{i}" for i in range(12)]
    probs = rng.dirichlet(np.ones(2), size=(2, 12))
    P = np.concatenate([probs, rng.normal(size=(2, 12, 1))], axis=2)
    joiner.add_predictions(ids, P, np.ones(2, dtype=bool), {"avg": P.mean(axis=0)})
    kind = rng.integers(0, 2, 12)
    size = rng.normal(size=12)
    docs = [
        orjson.dumps({"id": i, "labels": {"kind": int(k), "size": float(s)}})
        for i, k, s in zip(ids, kind, size, strict=True)
    ]
    docs.append(orjson.dumps({"id": "e0", "labels": {"kind": 1}}))  # a task missing
    joined = joiner.add_labels(docs)
    assert joined is not None and joined.y.shape == (12, 2)
    np.testing.assert_array_equal(joined.y[:, 0], kind)
    np.testing.assert_allclose(joined.y[:, 1], size)
    snapshot = joiner.rolling_snapshot()
    assert snapshot[("model", "m0[kind]", "accuracy")] == pytest.approx(
        accuracy_score(kind, probs[0].argmax(axis=1))
    )
    assert snapshot[("strategy", "avg[size]", "mae")] == pytest.approx(
        mean_absolute_error(size, P.mean(axis=0)[:, 2])
    )
    assert {n for _, n, _ in snapshot} == {
        f"{m}[{t}]" for m in [*MODELS, *STRATEGIES] for t in ("kind", "size")
    }


@pytest.mark.parametrize(
    ("block", "raw"),
    [
        (
            Block("", "classification", 0, 3, (0, 1, 2)),
            [0, 1.0, 2, "1", None, True, 3, 2.5, [1], {"a": 1}, float("nan")],
        ),
        (Block("", "classification", 0, 2, ("no", "yes")), ["yes", "no", "maybe", 1, ["no"]]),
        (Block("", "regression", 0, 1), [1, 2.5, "3", None, True, float("inf"), [1.0]]),
        (Block("", "regression", 0, 1), [1, 2.5, -3]),
    ],
)
def test_label_index_gives_each_label_the_same_answer_alone_and_in_a_batch(
    block: Block, raw: list[Any]
) -> None:
    """A batch of plain numbers takes the C-level fast path, a mixed one the per-label path:
    both must agree on every label."""
    values, ok = block.label_index(raw)
    for i, label in enumerate(raw):
        one_value, one_ok = block.label_index([label])
        assert ok[i] == one_ok[0], label
        if ok[i]:
            assert values[i] == one_value[0], label


def test_label_index_matches_numeric_strings_but_never_booleans() -> None:
    block = Block("", "classification", 0, 3, (0, 1, 2))
    values, ok = block.label_index(["1", True, 2.0, [1]])
    assert ok.tolist() == [True, False, True, False]
    assert values[ok].tolist() == [1, 2]


@pytest.mark.parametrize("layout", [CLASSIFICATION, REGRESSION, MULTITASK])
def test_series_names_every_rolling_score_the_join_sets(
    rng: np.random.Generator, layout: OutputLayout
) -> None:
    joiner, registry = make_joiner(layout)
    n_outputs = layout.n_outputs
    ids, P, available, _ = batch(rng, [f"e{i}" for i in range(20)], n_outputs)
    joiner.add_predictions(ids, P, available, {"avg": np.nanmean(P, axis=0)})
    if layout is MULTITASK:
        values = [orjson.dumps({"id": i, "labels": {"kind": 1, "size": 2.0}}) for i in ids]
    else:
        values = labels([(i, "dog" if layout is CLASSIFICATION else 1.5) for i in ids])
    joiner.add_labels(values)
    family = next(f for f in registry.collect() if f.name == "streamfuse_rolling_metric")
    exported = {(s.labels["scope"], s.labels["name"], s.labels["metric"]) for s in family.samples}
    assert exported and exported == set(joiner.series())
