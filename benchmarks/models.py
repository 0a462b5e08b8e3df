"""The benchmark's model set, its events, and an in-process profile of the pipeline stages.

:func:`build_store` trains the ensemble of the performance issue on a seeded synthetic data set
(``make_classification``, 32 float features, 2 classes): a random forest (100 trees, depth 12),
histogram gradient boosting (100 iterations) and a torch MLP (32-128-128-2, trained with
:func:`worker.tools.train.fit_torch`), and publishes them the way ``streamfuse train`` does, with
``soft_vote``, ``hard_vote`` and ``weighted_average`` fitted on a held-out split.

:func:`profile_pipeline` times each stage of :class:`worker.inference.pipeline.Pipeline` on one
recorded batch, without Kafka: decode, each model's predict (alone, and fanned out in parallel
as the worker does), each strategy's combine, encode, and the whole ``process`` call.
"""

from __future__ import annotations

import io
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from threadpoolctl import threadpool_limits

import combiners
from model_store import ModelStore
from worker.batch.decode import DecodedBatch, Schema, decode_batch
from worker.batch.encode import encode_predictions
from worker.batch.framed import FieldMap, ReaderSource, decode_mixed
from worker.config import Settings
from worker.inference.pipeline import Pipeline
from worker.inference.serving import build_serving, open_store
from worker.inference.strategies import HELDOUT_DATASET
from worker.tools.fit import publish_reference
from worker.tools.train import fit_torch

__all__ = [
    "ACTIVE_STRATEGY",
    "BENCH_MODELS",
    "MLP_SPEC",
    "MODEL_NAMES",
    "N_FEATURES",
    "SHADOW_STRATEGIES",
    "BenchRecord",
    "avro_batch",
    "build_store",
    "decode_seconds",
    "event_value",
    "profile_pipeline",
    "publish_common",
    "training_rows",
]

N_FEATURES = 32
MODEL_NAMES = ("rf", "hgb", "mlp")
#: What ``python -m benchmarks --models`` may name (XGBoost: 100 trees of depth 6; LightGBM: 100
#: trees of 31 leaves).
BENCH_MODELS = ("rf", "hgb", "mlp", "xgboost", "lightgbm")
ACTIVE_STRATEGY = "soft_vote"
SHADOW_STRATEGIES = ("hard_vote", "weighted_average")
MLP_SPEC = {
    "arch": "mlp",
    "n_inputs": N_FEATURES,
    "hidden": [128, 128],
    "n_outputs": 2,
    "task": "classification",
}


@dataclass
class BenchRecord:
    """A consumed record as the pipeline reads it, for the in-process profile."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None = None


@contextmanager
def _one_thread() -> Iterator[None]:
    """BLAS/OpenMP pools and torch's intra-op pool limited to one thread, then restored."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(saved)


def build_store(
    root: Path,
    seed: int = 0,
    n_samples: int = 5_000,
    mlp_epochs: int = 100,
    models: Sequence[str] = MODEL_NAMES,
) -> np.ndarray:
    """Train and publish the three models, the fitted strategies and the drift reference
    profile into a store at ``root``.

    Training runs with one thread per pool (HGB's OpenMP training crawls on a busy 2-core
    machine) on 3/5 of ``n_samples`` rows: few enough that HGB does not stop early (all 100
    iterations are built) and many enough that every tree of the forest reaches depth 12, so the
    prediction cost is that of the specified models.

    Returns
    -------
    ndarray of shape (n_samples // 5, 32)
        Rows none of the models or strategies saw, to send as events.
    """
    X, y = _classification(seed, n_samples)
    n_train, n_heldout = n_samples * 3 // 5, n_samples // 5
    X_tr, y_tr = X[:n_train], y[:n_train]
    X_ho, y_ho = X[n_train : n_train + n_heldout], y[n_train : n_train + n_heldout]
    fits: dict[str, Callable[[], tuple[Any, str]]] = {
        "rf": lambda: (RandomForestClassifier(100, max_depth=12, random_state=seed, n_jobs=1)
                       .fit(X_tr, y_tr), "sklearn"),
        "hgb": lambda: (HistGradientBoostingClassifier(max_iter=100, random_state=seed)
                        .fit(X_tr, y_tr), "sklearn"),
        "mlp": lambda: (fit_torch(MLP_SPEC, X_tr, [("mlp", y_tr)], seed, epochs=mlp_epochs),
                        "torch"),
        "xgboost": lambda: (_boosters(seed)["xgboost"].fit(X_tr, y_tr), "xgboost"),
        "lightgbm": lambda: (_boosters(seed)["lightgbm"].fit(X_tr, y_tr), "lightgbm"),
    }  # fmt: skip
    store = ModelStore(root)
    common = publish_common()
    versions = {}
    for name in models:
        with _one_thread():
            model, framework = fits[name]()
        spec = MLP_SPEC if framework == "torch" else None
        versions[name] = store.publish(
            name, model, framework=framework, output_kind="proba", spec=spec, **common
        )
    # As streamfuse train does: strategies see the outputs of the models as the store serves them.
    P_ho = np.stack([store.load(n, versions[n]).predict_outputs(X_ho) for n in models])
    store.publish_dataset(HELDOUT_DATASET, {"X": X_ho, "y": y_ho})
    strategies: dict[str, Any] = {}
    for name in (ACTIVE_STRATEGY, *SHADOW_STRATEGIES):
        fitted = combiners.get_combiner(name, task="classification").fit(P_ho, y_ho)
        meta, arrays = combiners.save_state(fitted)
        store.publish_strategy(name, meta, arrays, versions)
        strategies[name] = fitted
    # The drift reference, as train publishes it: the worker watches drift as by default
    # (STREAMFUSE_DRIFT__ENABLED=false runs the bench without it).
    publish_reference(
        store, "classification", X_tr, P_ho, list(models), strategies, y_ho, versions, None
    )
    return np.asarray(X[n_train + n_heldout :], dtype=np.float64)


def _classification(seed: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=n_samples,
        n_features=N_FEATURES,
        n_informative=12,
        n_redundant=4,
        flip_y=0.02,
        random_state=seed,
    )
    return X, y


def training_rows(seed: int = 0, n_samples: int = 5_000) -> tuple[np.ndarray, np.ndarray]:
    """The rows :func:`build_store` trains its models on (for more versions of one)."""
    X, y = _classification(seed, n_samples)
    return X[: n_samples * 3 // 5], y[: n_samples * 3 // 5]


def publish_common() -> dict[str, Any]:
    """The ``publish`` arguments every bench model shares (schema, task, classes)."""
    schema = {"n_features": N_FEATURES, "feature_names": None}
    return {"input_schema": schema, "task": "classification", "classes": [0, 1]}


def _boosters(seed: int) -> dict[str, Any]:
    import lightgbm as lgb
    import xgboost as xgb

    return {
        "xgboost": xgb.XGBClassifier(n_estimators=100, max_depth=6, random_state=seed, n_jobs=1),
        "lightgbm": lgb.LGBMClassifier(n_estimators=100, random_state=seed, n_jobs=1, verbose=-1),
    }


def event_value(event_id: str, row: list[float], ts: float) -> bytes:
    """A feature event as the worker reads it (docs/events.md, "Input events")."""
    return orjson.dumps({"id": event_id, "features": row, "ts": ts})


def saturation_events(rows: np.ndarray, n: int) -> tuple[list[bytes], list[bytes]]:
    """``n`` events cycling through ``rows``: their keys (``e-<i>``) and values."""
    X = np.resize(rows, (n, rows.shape[1])).tolist()
    now = time.time()
    keys = [f"e-{i}".encode() for i in range(n)]
    return keys, [event_value(f"e-{i}", X[i], now) for i in range(n)]


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: first calls allocate and build thread pools
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decode_seconds(
    values: Sequence[bytes], schema: Schema, max_bytes: int, repeats: int
) -> dict[str, float]:
    """Median seconds to decode ``values`` (``decode``), and the same events as Confluent-framed
    Avro (``decode.avro``: a record of ``id``, ``ts`` and one double per feature, read through
    :class:`~worker.schemas.RegistryReaders` over an in-memory registry), the two alternated so
    that a loaded machine slows both alike. Without the schema-registry extra: ``decode`` only.
    """
    json_call = partial(decode_batch, values, schema, max_bytes)
    try:
        avro = avro_batch(decode_batch(values, schema, max_bytes), schema)
    except ImportError:
        return {"decode": _median_seconds(json_call, repeats)}
    framed, source, fields = avro
    got = decode_mixed(framed, schema, max_bytes, source, fields)
    if got.rejections or len(got.ids) != len(values):
        raise RuntimeError(f"the Avro batch does not decode: {got.rejections[:1]}")
    avro_call = partial(decode_mixed, framed, schema, max_bytes, source, fields)
    times: dict[str, list[float]] = {"decode": [], "decode.avro": []}
    for _ in range(repeats):
        for name, call in (("decode", json_call), ("decode.avro", avro_call)):
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def avro_batch(decoded: DecodedBatch, schema: Schema) -> tuple[list[bytes], ReaderSource, FieldMap]:
    """``decoded``'s events as Confluent-framed Avro (schema id 1), a reader source that knows
    the schema, and the field map that reads them back."""
    import fastavro
    from confluent_kafka.schema_registry import Schema as RegisteredSchema

    from worker.schemas import RegistryReaders

    fields = FieldMap.for_schema(schema, {}, "id", "ts")
    record = {
        "type": "record",
        "name": "Features",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "ts", "type": "double"},
            *({"name": name, "type": "double"} for name in fields.features),
        ],
    }
    registered = RegisteredSchema(orjson.dumps(record).decode(), "AVRO")

    class Registry:  # the client's get_schema, cached as confluent-kafka's client caches it
        def get_schema(self, schema_id: int, *args: Any, **kwargs: Any) -> RegisteredSchema:
            return registered

    parsed = fastavro.parse_schema(record)
    framed = []
    for doc_id, row, t in zip(decoded.ids, decoded.X.tolist(), decoded.ts.tolist(), strict=True):
        out = io.BytesIO()
        out.write(b"\x00" + (1).to_bytes(4, "big"))
        doc = {"id": str(doc_id), "ts": t, **dict(zip(fields.features, row, strict=True))}
        fastavro.schemaless_writer(out, parsed, doc)
        framed.append(out.getvalue())
    return framed, RegistryReaders(Registry(), wait=lambda: False), fields


def traced_seconds(
    settings: Settings, pipeline: Pipeline, records: Sequence[BenchRecord], repeats: int
) -> float | None:
    """Median seconds of one batch with the worker's tracing on, as its loop makes the calls
    (worker.service.tracing: a batch span, a span per model and per strategy), every span
    exported by OTLP/HTTP to a receiver in this process that reads and drops what it is sent;
    None without the otel extra. The bench's records carry no traceparent: no links."""
    import importlib.util
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    if importlib.util.find_spec("opentelemetry.sdk") is None:
        return None
    from worker.config import TracingSettings
    from worker.delivery import Batch
    from worker.service.tracing import BatchTracer
    from worker.transport import TopicPartition

    class Drop(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drop)
    Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    tracer = BatchTracer(
        settings.model_copy(update={"tracing": TracingSettings(otlp_endpoint=url)})
    )
    span = {TopicPartition(settings.topics.input, 0): (0, len(records) - 1)}

    def traced() -> None:
        started = time.perf_counter()
        flight = pipeline.start(records, started)
        tracer.begin(Batch(list(records), span, started, None), flight.result)
        tracer.end(pipeline.finish(flight), "delivered")

    try:
        return _median_seconds(traced, repeats)
    finally:
        tracer.shutdown()
        server.shutdown()
        server.server_close()


def profile_pipeline(
    settings: Settings, values: Sequence[bytes], repeats: int = 20
) -> tuple[dict[str, float], bytes]:
    """Median seconds per stage on one batch of ``values``, and one encoded prediction.

    Stage names: ``decode``, ``decode.avro`` (the same events as Avro, :func:`decode_seconds`),
    ``predict.<model>`` (one model alone, default thread pools), ``predict.<model>.1thread``
    (pools limited to one thread), ``predict.<model>.row`` (one event per call, as a naive loop
    does), ``predict.fanout`` (all models in parallel threads, as the worker runs them),
    ``combine.<strategy>``, ``encode`` and ``process`` (the whole :meth:`Pipeline.process`
    call).
    """
    serving = build_serving(open_store(settings.store), settings)
    model_set, strategies = serving.model_set, serving.strategies
    pipeline = Pipeline(serving, settings.on_model_error, settings.validation.max_event_bytes)
    records = [
        BenchRecord(settings.topics.input, 0, i, f"k{i}".encode(), v) for i, v in enumerate(values)
    ]
    values = list(values)
    schema, max_bytes = model_set.schema, settings.validation.max_event_bytes
    decoded = decode_batch(values, schema, max_bytes)
    X, n_outputs = decoded.X, model_set.layout.n_outputs
    timings: dict[str, float] = defaultdict(float)
    timings.update(decode_seconds(values, schema, max_bytes, repeats))
    for model in model_set.models:
        timings[f"predict.{model.name}"] = _median_seconds(
            partial(model.predict_outputs, X), repeats
        )
    with _one_thread():
        for model in model_set.models:
            timings[f"predict.{model.name}.1thread"] = _median_seconds(
                partial(model.predict_outputs, X), repeats
            )
    for model in model_set.models:
        timings[f"predict.{model.name}.row"] = _median_seconds(
            partial(model.predict_outputs, X[:1]), repeats
        )
    fan = pipeline.fanout.predict(model_set.predict_fns, X, n_outputs)
    timings["predict.fanout"] = _median_seconds(
        lambda: pipeline.fanout.predict(model_set.predict_fns, X, n_outputs), repeats
    )
    outputs = {}
    for strategy in strategies:
        outputs[strategy.name] = strategy.combiner.combine(fan.P, available=fan.available)
        timings[f"combine.{strategy.name}"] = _median_seconds(
            partial(strategy.combiner.combine, fan.P, available=fan.available), repeats
        )

    def encode() -> list[bytes]:
        return encode_predictions(
            ids=decoded.ids,
            layout=model_set.layout,
            strategy=strategies[0].name,
            combined=outputs[strategies[0].name],
            model_names=model_set.names,
            model_versions=[m.version for m in model_set.models],
            P=fan.P,
            available=fan.available,
            failure_kinds={},
            shadows={s.name: outputs[s.name] for s in strategies[1:]},
            latency_ms=1.0,
        )

    timings["encode"] = _median_seconds(encode, repeats)
    timings["process"] = _median_seconds(lambda: pipeline.process(records), repeats)
    traced = traced_seconds(settings, pipeline, records, repeats)
    if traced is not None:
        timings["process.traced"] = traced
    sample = pipeline.process(records[:1]).predictions[0].value
    pipeline.close()
    return dict(timings), sample
