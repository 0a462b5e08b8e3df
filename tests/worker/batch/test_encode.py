"""Encoding predictions into output records, and the output layout behind it."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from worker.batch.encode import encode_predictions
from worker.batch.layout import OutputLayout

CLASSES = ["cat", "dog", "eel"]
MT_MANIFEST = {
    "task": "multitask",
    "tasks": [
        {"name": "kind", "type": "classification", "n_outputs": 2, "classes": [0, 1]},
        {"name": "value", "type": "regression", "n_outputs": 1, "classes": None},
    ],
}


def probabilities(rng: np.random.Generator, *shape: int) -> np.ndarray:
    raw = rng.random(shape) + 0.01
    return raw / raw.sum(axis=-1, keepdims=True)


def encode(
    layout: OutputLayout,
    P: np.ndarray,
    combined: np.ndarray,
    *,
    ids: list[Any] | None = None,
    available: np.ndarray | None = None,
    failure_kinds: dict[str, str] | None = None,
    shadows: dict[str, np.ndarray] | None = None,
    latency_ms: float = 1.23456,
) -> list[dict[str, Any]]:
    n_models, n_events = P.shape[:2]
    names = [f"m{m}" for m in range(n_models)]
    values = encode_predictions(
        ids=ids if ids is not None else [f"e{i}" for i in range(n_events)],
        layout=layout,
        strategy="soft_vote",
        combined=combined,
        model_names=names,
        model_versions=[m + 1 for m in range(n_models)],
        P=P,
        available=np.ones(n_models, dtype=bool) if available is None else available,
        failure_kinds=failure_kinds or {},
        shadows=shadows or {},
        latency_ms=latency_ms,
    )
    assert all(isinstance(v, bytes) for v in values)
    return [orjson.loads(v) for v in values]


def test_classification(rng: np.random.Generator) -> None:
    layout = OutputLayout.from_manifest({"task": "classification", "classes": CLASSES}, 3)
    P = probabilities(rng, 2, 5, 3)
    combined = P.mean(axis=0)
    docs = encode(layout, P, combined, ids=["a", 7, "c", "d", "e"])
    assert [d["id"] for d in docs] == ["a", 7, "c", "d", "e"]
    for i, doc in enumerate(docs):
        assert doc["prediction"] == CLASSES[int(np.argmax(combined[i]))]
        np.testing.assert_array_equal(doc["scores"], combined[i])
        assert doc["classes"] == CLASSES  # what each score is, without the store
        assert list(doc)[:4] == ["id", "prediction", "scores", "classes"]
        assert doc["strategy"] == "soft_vote"
        assert doc["degraded"] is False
        assert doc["latency_ms"] == pytest.approx(1.23456, abs=1e-3)
        assert "tasks" not in doc and "shadow" not in doc
        for m in range(2):
            entry = doc["models"][f"m{m}"]
            assert entry["version"] == m + 1
            assert entry["prediction"] == CLASSES[int(np.argmax(P[m, i]))]
            np.testing.assert_array_equal(entry["scores"], P[m, i])
            assert entry["classes"] == CLASSES


def test_scores_by_class(rng: np.random.Generator) -> None:
    layout = OutputLayout.from_manifest({"task": "classification", "classes": [0, 1, 2]}, 3)
    P = probabilities(rng, 2, 4, 3)
    combined = P.mean(axis=0)
    values = encode_predictions(
        ids=list(range(4)),
        layout=layout,
        strategy="soft_vote",
        combined=combined,
        model_names=["a", "b"],
        model_versions=[1, 1],
        P=P,
        available=np.ones(2, dtype=bool),
        failure_kinds={},
        shadows={},
        latency_ms=1.0,
        scores_by_class=True,
    )
    for i, doc in enumerate(map(orjson.loads, values)):
        assert doc["scores"] == dict(zip(["0", "1", "2"], combined[i].tolist(), strict=True))
        assert doc["models"]["b"]["scores"] == dict(
            zip(["0", "1", "2"], P[1, i].tolist(), strict=True)
        )
        assert "classes" not in doc  # the keys are the classes


def test_classification_without_classes_predicts_column_indices(rng: np.random.Generator) -> None:
    layout = OutputLayout.from_manifest({"task": "classification"}, 4)
    P = probabilities(rng, 1, 6, 4)
    docs = encode(layout, P, P[0])
    assert [d["prediction"] for d in docs] == P[0].argmax(axis=1).tolist()
    assert all(d["classes"] == [0, 1, 2, 3] for d in docs)


def test_regression_single_output(rng: np.random.Generator) -> None:
    layout = OutputLayout.from_manifest({"task": "regression"}, 1)
    P = rng.normal(size=(3, 4, 1)) * 100
    combined = P.mean(axis=0)
    docs = encode(layout, P, combined)
    for i, doc in enumerate(docs):
        assert doc["prediction"] == combined[i, 0]
        assert "scores" not in doc and "classes" not in doc
        for m in range(3):
            assert doc["models"][f"m{m}"] == {"prediction": P[m, i, 0], "version": m + 1}


def test_regression_multi_output(rng: np.random.Generator) -> None:
    layout = OutputLayout.from_manifest({"task": "regression"}, 2)
    P = rng.normal(size=(2, 3, 2))
    combined = P.mean(axis=0)
    docs = encode(layout, P, combined)
    for i, doc in enumerate(docs):
        assert doc["prediction"] == combined[i].tolist()
        assert "scores" not in doc
        assert doc["models"]["m1"]["prediction"] == P[1, i].tolist()


def test_multitask_adds_a_tasks_field(rng: np.random.Generator) -> None:
    layout = OutputLayout.from_manifest(MT_MANIFEST, 3)
    assert layout.is_multitask and layout.n_outputs == 3
    P = np.concatenate([probabilities(rng, 2, 4, 2), rng.normal(size=(2, 4, 1))], axis=2)
    combined = P.mean(axis=0)
    docs = encode(layout, P, combined)
    for i, doc in enumerate(docs):
        kind = int(np.argmax(combined[i, :2]))
        assert doc["tasks"]["kind"]["prediction"] == kind
        np.testing.assert_array_equal(doc["tasks"]["kind"]["scores"], combined[i, :2])
        assert doc["tasks"]["kind"]["classes"] == [0, 1]
        assert doc["tasks"]["value"] == {"prediction": combined[i, 2]}
        # The top level carries the first task, as a single-task prediction would.
        assert doc["prediction"] == kind
        np.testing.assert_array_equal(doc["scores"], combined[i, :2])
        assert doc["classes"] == [0, 1]


def test_unavailable_model_is_flagged_and_degrades_the_batch(rng: np.random.Generator) -> None:
    layout = OutputLayout.from_manifest({"task": "classification", "classes": CLASSES}, 3)
    P = probabilities(rng, 3, 2, 3)
    P[1] = np.nan
    P[2] = np.nan
    available = np.array([True, False, False])
    docs = encode(
        layout,
        P,
        P[0],
        available=available,
        failure_kinds={"m1": "timeout"},  # m2 has no recorded kind
    )
    for i, doc in enumerate(docs):
        assert doc["degraded"] is True
        assert doc["models"]["m1"] == {"error": "timeout", "version": 2}
        assert doc["models"]["m2"] == {"error": "error", "version": 3}
        assert doc["models"]["m0"]["prediction"] == CLASSES[int(np.argmax(P[0, i]))]
        assert doc["prediction"] == CLASSES[int(np.argmax(P[0, i]))]


def test_shadow_predictions(rng: np.random.Generator) -> None:
    layout = OutputLayout.from_manifest({"task": "classification", "classes": CLASSES}, 3)
    P = probabilities(rng, 2, 5, 3)
    shadows = {"hard_vote": probabilities(rng, 5, 3), "select_best": P[1]}
    docs = encode(layout, P, P.mean(axis=0), shadows=shadows)
    for i, doc in enumerate(docs):
        assert doc["shadow"] == {
            name: CLASSES[int(np.argmax(out[i]))] for name, out in shadows.items()
        }


def test_no_events_gives_no_records(rng: np.random.Generator) -> None:
    layout = OutputLayout.from_manifest({"task": "classification", "classes": CLASSES}, 3)
    assert encode(layout, np.zeros((2, 0, 3)), np.zeros((0, 3))) == []


# -- layout -----------------------------------------------------------------------------------


def test_multitask_layout_blocks() -> None:
    layout = OutputLayout.from_manifest(MT_MANIFEST, 3)
    assert [(b.name, b.kind, b.start, b.stop, b.classes) for b in layout.blocks] == [
        ("kind", "classification", 0, 2, (0, 1)),
        ("value", "regression", 2, 3, None),
    ]


def test_label_index_for_classification() -> None:
    block = OutputLayout.from_manifest({"task": "classification", "classes": [3, 5, 9]}, 3).blocks[
        0
    ]
    values, ok = block.label_index([5, 9.0, 3, 4, "x", True, None])
    assert ok.tolist() == [True, True, True, False, False, False, False]
    assert values[ok].tolist() == [1, 2, 0]


def test_label_index_for_string_classes() -> None:
    block = OutputLayout.from_manifest({"task": "classification", "classes": CLASSES}, 3).blocks[0]
    values, ok = block.label_index(["eel", "cat", "cow"])
    assert ok.tolist() == [True, True, False]
    assert values[:2].tolist() == [2, 0]


def test_label_index_for_regression() -> None:
    block = OutputLayout.from_manifest({"task": "regression"}, 1).blocks[0]
    values, ok = block.label_index([1.5, 2, "3", True, None, float("nan")])
    assert ok.tolist() == [True, True, False, False, False, False]
    assert values[:2].tolist() == [1.5, 2.0]


def test_label_given_as_a_numeric_string_matches_a_numeric_class() -> None:
    block = OutputLayout.from_manifest({"task": "classification", "classes": [0, 1, 2, 3]}, 4)
    values, ok = block.blocks[0].label_index(["3", "0"])
    assert ok.tolist() == [True, True]
    assert values.tolist() == [3, 0]


def documented(
    layout: OutputLayout,
    P: np.ndarray,
    combined: np.ndarray,
    ids: list[Any],
    names: list[str],
    available: np.ndarray,
    failure_kinds: dict[str, str],
    shadows: dict[str, np.ndarray],
    strategy: str,
    keyed: bool = False,
) -> list[bytes]:
    """The documented document, built per event as plain dicts and dumped by orjson."""
    out = []
    for i, event_id in enumerate(ids):

        def entry(outputs: np.ndarray, block: Any, i: int = i) -> dict[str, Any]:
            row = outputs[i : i + 1]
            doc = {"prediction": block.predictions(row)[0]}
            if block.scores(row) is not None and keyed:
                doc["scores"] = dict(
                    zip(map(str, block.classes), block.scores(row)[0], strict=True)
                )
            elif block.scores(row) is not None:
                doc["scores"] = block.scores(row)[0]
                doc["classes"] = list(block.classes)
            return doc

        first = layout.blocks[0]
        doc: dict[str, Any] = {"id": event_id, **entry(combined, first), "strategy": strategy}
        doc["models"] = {
            name: {**entry(P[m], first), "version": m + 1}
            if available[m]
            else {"error": failure_kinds.get(name, "error"), "version": m + 1}
            for m, name in enumerate(names)
        }
        if shadows:
            doc["shadow"] = {k: entry(v, first)["prediction"] for k, v in shadows.items()}
        if layout.is_multitask:
            doc["tasks"] = {b.name: entry(combined, b) for b in layout.blocks}
        doc["degraded"] = not bool(available.all())
        doc["latency_ms"] = 7.5
        out.append(orjson.dumps(doc))
    return out


@pytest.mark.parametrize(
    "manifest, n_outputs",
    [
        ({"task": "classification", "classes": ['50% "off"', "dog", "é"]}, 3),
        ({"task": "classification", "classes": [0, 1]}, 2),
        ({"task": "regression"}, 1),
        ({"task": "regression"}, 2),
        (MT_MANIFEST, 3),
    ],
    ids=["string-classes", "int-classes", "regression", "regression-2", "multitask"],
)
@pytest.mark.parametrize("degraded", [False, True])
@pytest.mark.parametrize("keyed", [False, True], ids=["scores-list", "scores-by-class"])
def test_the_bytes_are_orjson_of_the_documented_dict(
    rng: np.random.Generator, manifest: dict[str, Any], n_outputs: int, degraded: bool, keyed: bool
) -> None:
    """The per-batch template gives, byte for byte, orjson's dump of each event's dict; names
    and labels holding ``%``, quotes and non-ASCII cannot break the template."""
    layout = OutputLayout.from_manifest(manifest, n_outputs)
    n_events, names = 7, ["rf", "100%", 'q"uote']
    P = probabilities(rng, len(names), n_events, n_outputs)
    combined = P.mean(axis=0)
    ids: list[Any] = ["a%sb", 5, "ü-é", "%d", 2**40, "x", ""][:n_events]
    available = np.array([True, not degraded, True])
    failures = {"100%": "timeout%s"} if degraded else {}
    shadows = {"hard%vote": P[0], "select": P[2]}
    values = encode_predictions(
        ids=ids,
        layout=layout,
        strategy="soft%s_vote",
        combined=combined,
        model_names=names,
        model_versions=[1, 2, 3],
        P=P,
        available=available,
        failure_kinds=failures,
        shadows=shadows,
        latency_ms=7.5,
        scores_by_class=keyed,
    )
    expected = documented(
        layout, P, combined, ids, names, available, failures, shadows, "soft%s_vote", keyed
    )
    assert values == expected
