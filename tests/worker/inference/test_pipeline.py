"""The micro-batch hot path on a real trained store: predictions, dead letters, degraded batches.

Expected values are recomputed offline: each model loaded again from the store and run on the
same rows, and the stored fitted strategy rebuilt with ``combiners.load_state``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

import combiners
from model_store import ModelStore
from worker.batch.headers import HeaderCarry
from worker.batch.records import reason_of
from worker.config import ModelErrorPolicy, ModelRef, StrategyRef
from worker.inference.models import ModelSet
from worker.inference.pipeline import BatchResult, OutRecord, Pipeline
from worker.inference.serving import Serving
from worker.inference.strategies import Strategy, build_strategies
from worker.metrics import Metrics

ACTIVE = "soft_vote"
SHADOWS = ("hard_vote", "weighted_sum")
TOPIC = "features"


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None = None
    timestamp: int = -1


def records(
    values: Sequence[bytes | None], keys: Sequence[bytes | None] | None = None
) -> list[Record]:
    keys = keys if keys is not None else [None] * len(values)
    return [
        Record(TOPIC, 3, 100 + i, k, v) for i, (k, v) in enumerate(zip(keys, values, strict=True))
    ]


def event(doc_id: Any, row: np.ndarray) -> bytes:
    return orjson.dumps({"id": doc_id, "features": row.tolist(), "ts": 1_700_000_000.5})


def headers(record: OutRecord) -> dict[str, bytes]:
    return dict(record.headers)


@dataclass
class Served:
    store: ModelStore
    model_set: ModelSet
    strategies: list[Strategy]
    X: np.ndarray  # the test split
    classes: list[Any]

    def offline(self, X: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``P`` from freshly loaded models and every strategy's output, computed directly."""
        P = np.stack([self.store.load(n).predict_outputs(X) for n in self.model_set.names])
        outs = {}
        for name in (ACTIVE, *SHADOWS):
            stored = self.store.load_strategy(name)
            outs[name] = combiners.load_state(stored.meta, stored.arrays).combine(P)
        return P, outs


@pytest.fixture(scope="module")
def served(trained: Any) -> Served:
    store = ModelStore(trained.root)
    model_set = ModelSet(store, [ModelRef(name=n) for n in trained.model_names])
    strategies = build_strategies(
        store, model_set, StrategyRef(name=ACTIVE), [StrategyRef(name=s) for s in SHADOWS]
    )
    assert [s.source for s in strategies] == ["store v1"] * 3
    X = np.asarray(store.load_dataset("test").arrays["X"], dtype=np.float64)
    return Served(store, model_set, strategies, X, store.manifest("rf")["classes"])


@pytest.fixture
def make_pipeline(served: Served, registry: CollectorRegistry) -> Iterator[Any]:
    made: list[Pipeline] = []

    def make(
        policy: str = "renormalize",
        min_models: int = 1,
        strategies: list[Strategy] | None = None,
        timeout_ms: int = 60_000,
        scores_by_class: bool = False,
        carry: HeaderCarry | None = None,
    ) -> Pipeline:
        pipeline = Pipeline(
            Serving(
                served.model_set,
                tuple(strategies if strategies is not None else served.strategies),
            ),
            ModelErrorPolicy(policy=policy, min_models=min_models, timeout_ms=timeout_ms),
            max_event_bytes=1 << 16,
            metrics=Metrics(registry) if not made else None,
            scores_by_class=scores_by_class,
            carry=carry,
        )
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()


def check_predictions(
    served: Served,
    result: BatchResult,
    X: np.ndarray,
    ids: list[Any],
    *,
    available: np.ndarray | None = None,
) -> None:
    """Every prediction equals the offline computation on the same rows."""
    P, outs = served.offline(X)
    n_models = len(served.model_set.names)
    available = np.ones(n_models, dtype=bool) if available is None else available
    if not available.all():
        P = P.copy()
        P[~available] = np.nan
        for name in outs:
            stored = served.store.load_strategy(name)
            combiner = combiners.load_state(stored.meta, stored.arrays)
            outs[name] = combiner.combine(P, available=available)
    assert len(result.predictions) == len(ids)
    assert result.ids == ids
    for name, out in outs.items():
        np.testing.assert_allclose(result.outputs[name], out, rtol=1e-12, atol=1e-12)
    versions = served.model_set.versions
    for i, record in enumerate(result.predictions):
        doc = orjson.loads(record.value)
        assert doc["id"] == ids[i]
        assert doc["strategy"] == ACTIVE
        assert doc["prediction"] == served.classes[int(np.argmax(outs[ACTIVE][i]))]
        np.testing.assert_allclose(doc["scores"], outs[ACTIVE][i], rtol=1e-12, atol=1e-12)
        assert doc["classes"] == list(served.classes)
        assert doc["shadow"] == {s: served.classes[int(np.argmax(outs[s][i]))] for s in SHADOWS}
        assert doc["degraded"] is (not available.all())
        assert doc["latency_ms"] >= 0
        for m, name in enumerate(served.model_set.names):
            entry = doc["models"][name]
            assert entry["version"] == versions[name]
            if available[m]:
                np.testing.assert_allclose(entry["scores"], P[m, i], rtol=1e-12, atol=1e-12)
                assert entry["classes"] == list(served.classes)
                assert entry["prediction"] == served.classes[int(np.argmax(P[m, i]))]
            else:
                assert "prediction" not in entry and entry["error"]


# -- happy path -------------------------------------------------------------------------------


def test_one_prediction_per_event_equal_to_the_offline_result(
    served: Served, make_pipeline: Any, registry: CollectorRegistry
) -> None:
    X = served.X
    ids = [f"evt-{i}" for i in range(len(X))]
    keys = [f"key-{i}".encode() if i % 2 else None for i in range(len(X))]
    batch = records([event(i, row) for i, row in zip(ids, X, strict=True)], keys)
    result = make_pipeline().process(batch)
    assert result.dead_letters == []
    assert result.degraded is False and result.failures == []
    check_predictions(served, result, X, ids)
    for record, out in zip(batch, result.predictions, strict=True):
        assert out.key == (
            record.key if record.key is not None else orjson.loads(out.value)["id"].encode()
        )
        assert headers(out) == {"streamfuse.source": f"{TOPIC}:3:{record.offset}".encode()}
    np.testing.assert_array_equal(result.ts, np.full(len(X), 1_700_000_000.5))
    for name in served.model_set.names:
        assert (
            registry.get_sample_value("streamfuse_model_predict_seconds_count", {"model": name})
            == 1
        )
    assert registry.get_sample_value("streamfuse_combine_seconds_count", {"strategy": ACTIVE}) == 1


def test_an_event_without_ts_takes_its_records_kafka_timestamp(
    served: Served, make_pipeline: Any
) -> None:
    X = served.X[:4]
    values = [
        event("own", X[0]),  # its own ts wins over the record's
        orjson.dumps({"id": "kafka", "features": X[1].tolist()}),
        b"not json",  # dead-lettered: the good events' records are found by their position
        orjson.dumps({"id": "none", "features": X[3].tolist()}),
    ]
    batch = records(values)
    for record, ms in zip(batch, [1_764_390_000_123, 1_764_390_000_456, 7, -1], strict=True):
        record.timestamp = ms
    result = make_pipeline().process(batch)
    assert result.ids == ["own", "kafka", "none"]
    np.testing.assert_array_equal(result.ts, [1_700_000_000.5, 1_764_390_000.456, np.nan])


def test_key_falls_back_to_the_id(served: Served, make_pipeline: Any) -> None:
    batch = records(
        [event(7, served.X[0]), event("evt-x", served.X[1]), event("evt-y", served.X[2])],
        [None, None, b"given"],
    )
    result = make_pipeline().process(batch)
    assert [p.key for p in result.predictions] == [b"7", b"evt-x", b"given"]


def test_no_records(make_pipeline: Any) -> None:
    result = make_pipeline().process([])
    assert result.predictions == [] and result.dead_letters == []


# -- dead letters -----------------------------------------------------------------------------


def test_bad_events_become_dead_letters_with_their_stage(
    served: Served, make_pipeline: Any, registry: CollectorRegistry
) -> None:
    X = served.X[:4]
    bad_json = b'{"id": "broken", "features": ['
    short = orjson.dumps({"id": "short", "features": [1.0, 2.0]})
    values = [
        event("g0", X[0]),
        bad_json,
        event("g1", X[1]),
        None,
        short,
        event("g2", X[2]),
        event("g0", X[3]),  # a duplicate id
    ]
    keys = [b"k0", b"kbad", None, b"knull", None, b"k5", b"kdup"]
    batch = records(values, keys)
    result = make_pipeline().process(batch)

    expected = {1: "decode", 3: "decode", 4: "validate", 6: "validate"}
    assert len(result.dead_letters) == len(expected)
    for (record, stage), (i, want) in zip(
        result.dead_letters, sorted(expected.items()), strict=True
    ):
        source = batch[i]
        assert stage == want
        assert record.key == source.key
        assert record.value == (source.value if source.value is not None else b"")
        h = headers(record)
        assert h["streamfuse.stage"] == want.encode()
        assert h["streamfuse.source"] == f"{TOPIC}:3:{source.offset}".encode()
        assert h["streamfuse.error"]
    assert b"duplicate" in headers(result.dead_letters[-1][0])["streamfuse.error"]
    check_predictions(served, result, X[:3], ["g0", "g1", "g2"])
    assert [p.key for p in result.predictions] == [b"k0", b"g1", b"k5"]
    # Only good rows reach the models.
    assert registry.get_sample_value("streamfuse_model_predict_seconds_count", {"model": "rf"}) == 1


def test_a_batch_of_only_bad_events_never_reaches_the_models(
    make_pipeline: Any, registry: CollectorRegistry
) -> None:
    result = make_pipeline().process(records([b"nope", None, b"[]"]))
    assert [stage for _, stage in result.dead_letters] == ["decode", "decode", "validate"]
    assert result.predictions == []
    assert (
        registry.get_sample_value("streamfuse_model_predict_seconds_count", {"model": "rf"}) is None
    )


# -- model failures ---------------------------------------------------------------------------


@pytest.fixture
def broken_model(served: Served, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make the served ``linear`` model raise on every call (undone after the test)."""
    name = "linear"
    model = served.model_set.models[served.model_set.names.index(name)]

    def explode(X: np.ndarray) -> np.ndarray:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(model, "predict_outputs", explode)
    return name


def test_raising_model_gives_degraded_predictions_under_renormalize(
    served: Served, make_pipeline: Any, broken_model: str, registry: CollectorRegistry
) -> None:
    X = served.X[:6]
    ids = [f"d{i}" for i in range(len(X))]
    result = make_pipeline(policy="renormalize", min_models=1).process(
        records([event(i, row) for i, row in zip(ids, X, strict=True)])
    )
    available = np.array([n != broken_model for n in served.model_set.names])
    assert result.dead_letters == []
    assert result.degraded is True
    assert result.available is not None and result.available.tolist() == available.tolist()
    assert [(f.model, f.kind) for f in result.failures] == [(broken_model, "exception")]
    check_predictions(served, result, X, ids, available=available)
    doc = orjson.loads(result.predictions[0].value)
    assert doc["models"][broken_model] == {
        "error": "exception",
        "version": served.model_set.versions[broken_model],
    }
    assert (
        registry.get_sample_value(
            "streamfuse_model_errors_total", {"model": broken_model, "kind": "exception"}
        )
        == 1
    )


def test_just_enough_models_still_predict(
    served: Served, make_pipeline: Any, broken_model: str
) -> None:
    n = len(served.model_set.names)
    result = make_pipeline(min_models=n - 1).process(records([event("a", served.X[0])]))
    assert result.dead_letters == [] and len(result.predictions) == 1
    assert orjson.loads(result.predictions[0].value)["degraded"] is True


@pytest.mark.parametrize("policy", ["fail", "renormalize"])
def test_all_events_dead_lettered_at_predict(
    served: Served, make_pipeline: Any, broken_model: str, policy: str
) -> None:
    n = len(served.model_set.names)
    # "fail" refuses any missing model; "renormalize" refuses fewer than min_models answers.
    min_models = 1 if policy == "fail" else n
    values = [event("p0", served.X[0]), b"garbage", event("p1", served.X[1])]
    batch = records(values, [b"a", b"b", None])
    result = make_pipeline(policy=policy, min_models=min_models).process(batch)
    assert result.predictions == []
    assert [stage for _, stage in result.dead_letters] == ["decode", "predict", "predict"]
    for (record, _), source in zip(result.dead_letters[1:], [batch[0], batch[2]], strict=True):
        assert record.value == source.value and record.key == source.key
        error = headers(record)["streamfuse.error"].decode()
        assert broken_model in error and "exception" in error
        assert f"{n - 1} of {n}" in error


# -- strategy failures ------------------------------------------------------------------------


class Boom:
    def combine(self, P: np.ndarray, available: np.ndarray | None = None) -> np.ndarray:
        raise ValueError("strategy broke")


def boom(name: str) -> Strategy:
    return Strategy(name, StrategyRef(name=name), Boom(), "test", "strategy")


def test_failing_active_strategy_dead_letters_at_combine(
    served: Served, make_pipeline: Any
) -> None:
    pipeline = make_pipeline(strategies=[boom("bad_active"), *served.strategies[1:]])
    result = pipeline.process(records([event("c0", served.X[0]), event("c1", served.X[1])]))
    assert result.predictions == []
    assert [stage for _, stage in result.dead_letters] == ["combine", "combine"]
    assert b"strategy broke" in headers(result.dead_letters[0][0])["streamfuse.error"]


def test_failing_shadow_strategy_is_left_out(
    served: Served, make_pipeline: Any, registry: CollectorRegistry
) -> None:
    pipeline = make_pipeline(strategies=[served.strategies[0], boom("bad_shadow")])
    result = pipeline.process(records([event("s0", served.X[0])]))
    assert result.dead_letters == []
    doc = orjson.loads(result.predictions[0].value)
    assert "bad_shadow" not in doc.get("shadow", {})
    assert "bad_shadow" not in result.outputs
    assert (
        registry.get_sample_value("streamfuse_strategy_errors_total", {"strategy": "bad_shadow"})
        == 1
    )


def test_wait_follows_the_models_in_flight(
    served: Served, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    model = served.model_set.models[0]
    real = model.predict_outputs

    def gated(X: np.ndarray) -> np.ndarray:
        assert gate.wait(60)
        return real(X)

    monkeypatch.setattr(model, "predict_outputs", gated)
    X = served.X[:8]
    ids = [f"w-{i}" for i in range(len(X))]
    pipeline = make_pipeline()
    flight = pipeline.start(records([event(i, row) for i, row in zip(ids, X, strict=True)]))
    assert pipeline.wait(flight, 0) is False
    assert pipeline.wait(flight, 0.05) is False
    gate.set()
    assert pipeline.wait(flight, 60) is True
    assert pipeline.wait(flight, 0) is True
    check_predictions(served, pipeline.finish(flight), X, ids)


def test_wait_is_done_at_the_deadline_when_a_model_never_returns(
    served: Served, make_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else the loop would hold the batch until the next one arrives (forever on a quiet topic)."""
    release = threading.Event()
    model = served.model_set.models[0]
    real = model.predict_outputs

    def never_returns(X: np.ndarray) -> np.ndarray:
        release.wait(60)
        return real(X)

    monkeypatch.setattr(model, "predict_outputs", never_returns)
    pipeline = make_pipeline(timeout_ms=200)
    try:
        flight = pipeline.start(records([event("n-0", served.X[0])]))
        assert pipeline.wait(flight, 0) is False  # before the deadline
        assert pipeline.wait(flight, 30) is True  # returns at the deadline, not after 30 s
        result = pipeline.finish(flight)
    finally:
        release.set()
    assert [f.kind for f in result.failures] == ["timeout"]
    assert len(result.predictions) == 1 and result.degraded


def test_a_batch_with_no_good_event_is_ready_at_once(make_pipeline: Any) -> None:
    pipeline = make_pipeline()
    flight = pipeline.start(records([b"not json", b"{}"]))
    assert pipeline.wait(flight, 0)
    assert [stage for _, stage in pipeline.finish(flight).dead_letters] == ["decode", "validate"]


def test_scores_by_class_when_asked(served: Served, make_pipeline: Any) -> None:
    X = served.X[:3]
    result = make_pipeline(scores_by_class=True).process(
        records([event(f"k{i}", row) for i, row in enumerate(X)])
    )
    listed = make_pipeline().process(records([event(f"k{i}", row) for i, row in enumerate(X)]))
    keys = [str(c) for c in served.classes]
    for keyed, plain in zip(result.predictions, listed.predictions, strict=True):
        doc, ref = orjson.loads(keyed.value), orjson.loads(plain.value)
        assert doc["scores"] == dict(zip(keys, ref["scores"], strict=True))
        for name in served.model_set.names:
            expected = dict(zip(keys, ref["models"][name]["scores"], strict=True))
            assert doc["models"][name]["scores"] == expected


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()


def test_allow_listed_headers_and_the_trace_context_reach_predictions_and_dead_letters(
    served: Served, make_pipeline: Any
) -> None:
    pipeline = make_pipeline(carry=HeaderCarry.build(["x-tenant", "x-b3-*"], trace_context=True))
    batch = records([event("a", served.X[0]), b"{not json", event("c", served.X[2])])
    given = [
        ("traceparent", TRACEPARENT),
        ("tracestate", b"vendor=1"),
        ("x-tenant", b"acme"),
        ("x-b3-sampled", b"1"),
        ("x-secret", b"no"),
        ("streamfuse.error", b"forged"),
    ]
    batch[0].headers = given
    batch[1].headers = given
    batch[2].headers = [("traceparent", b"00-not-a-trace-01"), ("x-tenant", b"other")]
    result = pipeline.process(batch)
    first, third = result.predictions
    ((letter, stage),) = result.dead_letters
    for out in (first, letter):
        got = headers(out)
        assert got["x-tenant"] == b"acme" and got["x-b3-sampled"] == b"1"
        assert "x-secret" not in got and got.get("streamfuse.error") != b"forged"
        version, trace, span, flags = got["traceparent"].decode().split("-")
        assert (version, trace, flags) == ("00", TRACE_ID, "01")
        assert len(span) == 16 and span != "00f067aa0ba902b7"
        assert got["tracestate"] == b"vendor=1"
    assert stage == "decode" and reason_of(letter)
    assert headers(first)["traceparent"] != headers(letter)["traceparent"]  # a span each
    assert headers(third)["x-tenant"] == b"other" and "traceparent" not in headers(third)


def test_no_header_is_read_when_nothing_is_carried(served: Served, make_pipeline: Any) -> None:
    assert HeaderCarry.build([], trace_context=False) is None
    pipeline = make_pipeline(carry=None)
    batch = records([event("a", served.X[0])])
    batch[0].headers = [("traceparent", TRACEPARENT), ("x-tenant", b"acme")]
    (out,) = pipeline.process(batch).predictions
    assert [name for name, _ in out.headers] == ["streamfuse.source"]
