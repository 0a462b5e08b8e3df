"""``python -m benchmarks``: the worker side by side with the Kafka ceiling and a naive loop.

One run against one real broker, with the same events (32 float features, about 670 bytes of
JSON), the same output size (a real prediction, about 450 bytes) and the same topic layout (2
partitions everywhere):

1. **ceiling**: kafka-python consume -> produce -> flush -> commit in batches of
   ``batch.max_events`` with the worker's own client settings, no decoding, no models;
2. **worker**: ``streamfuse run`` subprocesses serving RF + HGB + MLP with ``soft_vote`` and two
   shadow strategies (:mod:`benchmarks.models`) on a pre-filled topic, once per
   ``processing_guarantee``, then two processes in one group; peak RSS of the at_least_once
   process; then end-to-end latency (receive time minus the event's ``ts``) with events
   produced at half the at_least_once rate;
3. **naive**: one event at a time: decode, three predict calls on one row, combine, encode,
   produce, flush, commit;
4. **profile**: each pipeline stage in process on one batch (:func:`profile_pipeline`), the
   Kafka calls of the ceiling loop, and the worker's own histograms scraped under load.

Throughput is events over the span of the outputs' CreateTime stamps (set by the producer at
``send``), from the first output to the last, so start-up (imports, model loading, the group
join) is left out. The two-worker topic is filled inside an open transaction that is committed
only once both workers hold a partition, so neither starts alone.

Timings depend on the machine and on whatever else runs on it; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import kafka
import numpy as np
import orjson
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from benchmarks.models import (
    BENCH_MODELS,
    build_store,
    event_value,
    profile_pipeline,
    saturation_events,
)
from worker.batch.encode import encode_predictions
from worker.config import Settings, settings_from_dict
from worker.errors import WorkerError
from worker.inference.serving import build_serving, open_store
from worker.transport.kafka_python import clients as kafka_io

__all__ = [
    "QUICK",
    "TARGETS",
    "BenchError",
    "BenchPlan",
    "main",
    "plan_from",
    "render",
    "run_bench",
    "targets",
]

from benchmarks.broker import (
    PARTITIONS,
    QUICK,
    BenchError,
    BenchPlan,
    Filled,
    Topics,
    WorkerProcess,
    broker,
    events_per_second,
    fill_gated,
    output_stamps,
    say,
    wait_committed,
    wait_until,
    worker_config,
)
from benchmarks.report import TARGETS, render, targets

# -- the phases -------------------------------------------------------------------------------


@dataclass
class Run:
    """What every phase shares."""

    bootstrap: str
    admin: KafkaAdminClient
    topics: Topics
    store: Path
    workdir: Path
    plan: BenchPlan
    rows: np.ndarray
    dead_letter: str = ""

    def group(self, role: str) -> str:
        return f"bench-{self.topics.run_id}-{role}"

    def config(self, role: str, input_topic: str, output: str, **kw: Any) -> dict[str, Any]:
        topics = {"input": input_topic, "output": output, "dead_letter": self.dead_letter}
        return worker_config(self.bootstrap, self.store, topics, self.group(role), self.plan, **kw)

    def settings(self, role: str, input_topic: str, output: str, **kw: Any) -> Settings:
        return settings_from_dict(self.config(role, input_topic, output, **kw))

    def commit_timeout(self) -> float:
        return 120 + self.plan.n_events / 200


def run_ceiling(run: Run, filled: Filled, value: bytes, output: str) -> dict[str, float]:
    """Median ms per full batch of poll, send, flush and commit, writing to ``output``.

    Every output has the size of a real prediction (``value``) and the worker's header.
    """
    settings = run.settings("ceiling", filled.topic, output)
    producer = kafka_io.output_producer(settings)
    consumer = kafka_io.input_consumer(settings)
    output = settings.topics.output
    max_events, max_wait = settings.batch.max_events, settings.batch.max_wait_ms / 1000
    laps: list[tuple[int, float, float, float, float]] = []  # size, poll, send, flush, commit
    n_total = filled.n_events
    done = 0

    def assigned() -> bool:
        # Polls drive the group join; 200 ms as the worker's idle polls (much shorter ones
        # once left kafka-python's join hanging after "performing partition assignments").
        if consumer.poll(timeout_ms=200):
            raise BenchError("the ceiling consumer read events before the gate opened")
        return len(consumer.assignment()) == PARTITIONS

    try:
        wait_until(assigned, 60, "the ceiling consumer's assignment")
        filled.open()
        deadline = time.monotonic() + run.commit_timeout()
        while done < n_total:
            if time.monotonic() > deadline:
                raise BenchError(f"the ceiling loop read {done} of {n_total} events in time")
            t0 = time.perf_counter()
            batch = _poll_batch(consumer, max_events, max_wait)
            if not batch:
                continue
            t1 = time.perf_counter()
            futures = [
                producer.send(
                    output,
                    key=r.key,
                    value=value,
                    headers=[("streamfuse.source", f"{r.topic}:{r.partition}:{r.offset}".encode())],
                )
                for r in batch
            ]
            t2 = time.perf_counter()
            producer.flush()
            for future in futures:
                future.get(timeout=0)
            t3 = time.perf_counter()
            last: dict[TopicPartition, int] = {}
            for r in batch:
                last[TopicPartition(r.topic, r.partition)] = r.offset
            consumer.commit({tp: OffsetAndMetadata(o + 1, None, -1) for tp, o in last.items()})
            t4 = time.perf_counter()
            done += len(batch)
            laps.append((len(batch), t1 - t0, t2 - t1, t3 - t2, t4 - t3))
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)
    # Full batches only, when there are any, so that per-batch costs compare with the profile.
    full = [lap for lap in laps if lap[0] == max_events] or laps
    medians = np.median(np.asarray(full)[:, 1:], axis=0) * 1000
    return dict(zip(("poll", "send", "flush", "commit"), medians.tolist(), strict=True))


def _poll_batch(consumer: KafkaConsumer, max_events: int, max_wait: float) -> list[Any]:
    """As the worker polls: up to ``max_events``, at most ``max_wait`` after the first record."""
    batch: list[Any] = []
    deadline = 0.0
    while len(batch) < max_events:
        if batch:
            timeout_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
        else:
            timeout_ms = 200
        for records in consumer.poll(
            timeout_ms=timeout_ms, max_records=max_events - len(batch)
        ).values():
            batch.extend(records)
        if not batch:
            return []
        if not deadline:
            deadline = time.monotonic() + max_wait
        if time.monotonic() >= deadline:
            break
    return batch


@dataclass
class WorkerFigures:
    eps: float
    rss_mib: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


def run_workers(
    run: Run,
    role: str,
    filled: Filled,
    n_processes: int = 1,
    guarantee: str = "at_least_once",
    library: str = "kafka-python",
    drift: bool = True,
    transaction_interval_ms: int = 0,
) -> WorkerFigures:
    """Saturation events/s of ``n_processes`` workers in one group; peak RSS and histogram
    means of the first. The events become visible once the workers share the partitions."""
    output = run.topics.make(f"{role}-out")
    procs: list[WorkerProcess] = []
    try:
        for i in range(n_processes):
            config = run.config(
                role,
                filled.topic,
                output,
                guarantee=guarantee,
                instance=i,
                library=library,
                drift=drift,
                transaction_interval_ms=transaction_interval_ms,
            )
            procs.append(WorkerProcess(run.workdir, f"{role}-{i}", config))

        def check() -> None:
            for p in procs:
                p.check()

        def sharing() -> bool:
            check()
            held = [len(p.assignment() or []) for p in procs]
            return min(held) >= 1 and sum(held) == PARTITIONS

        wait_until(sharing, 120, f"{n_processes} worker(s) sharing {PARTITIONS} partitions")
        filled.open()
        wait_committed(run.admin, run.group(role), filled.ends, run.commit_timeout(), check)
        figures = WorkerFigures(0.0, procs[0].peak_rss_mib(), procs[0].metrics())
    finally:
        for p in procs:
            p.stop()
    figures.eps = events_per_second(output_stamps(run.bootstrap, output, filled.n_events))
    return figures


def run_latency(run: Run, rate: float, library: str = "kafka-python") -> dict[str, float]:
    """End-to-end latency percentiles (ms) with events produced at ``rate`` per second by a
    librdkafka producer and read back by a librdkafka reader (:mod:`benchmarks.rdkafka`),
    whichever library the worker uses: the harness must keep up at half the fastest worker's
    saturation rate, which kafka-python's producer and reader could not."""
    from benchmarks.rdkafka import paced_produce, read_outputs

    plan = run.plan
    tag = LIBRARY_TAGS[library]
    role = f"latency{tag}-{rate:.0f}"
    input_topic = run.topics.make(f"{role}-in")
    output = run.topics.make(f"{role}-out")
    config = run.config(role, input_topic, output, library=library)
    worker = WorkerProcess(run.workdir, role, config)
    received: dict[str, float] = {}
    in_worker: dict[str, float] = {}
    sent_out: dict[str, float] = {}  # the prediction's CreateTime: when the worker sent it
    stop = threading.Event()

    def on_message(value: bytes, create_time_s: float, now: float) -> None:
        doc = orjson.loads(value)
        received[doc["id"]] = now
        in_worker[doc["id"]] = doc["latency_ms"]
        sent_out[doc["id"]] = create_time_s

    reader = threading.Thread(
        target=read_outputs,
        args=(run.bootstrap, output, stop, on_message),
        name="bench-latency-reader",
        daemon=True,
    )
    n = max(2, int(rate * (plan.latency_s + plan.latency_warmup_s)))
    rows = np.resize(run.rows, (n, run.rows.shape[1])).tolist()
    ids = [f"lat-{i}" for i in range(n)]
    try:
        wait_until(worker.assigned, 120, "the latency worker's partition assignment")
        reader.start()
        sent_at = paced_produce(
            run.bootstrap, input_topic, ids, lambda i, ts: event_value(ids[i], rows[i], ts), rate
        )
        achieved = (n - 1) / (sent_at[-1] - sent_at[0])
        wait_until(lambda: len(received) >= n, 60, f"{n} predictions of the latency phase")
    finally:
        stop.set()
        worker.stop()
        if reader.is_alive():
            reader.join(10)
    skip = int(rate * plan.latency_warmup_s)
    e2e = np.array([received[ids[i]] - sent_at[i] for i in range(skip, n)]) * 1000
    own = np.array([in_worker[ids[i]] for i in range(skip, n)])
    to_send = np.array([sent_out[ids[i]] - sent_at[i] for i in range(skip, n)]) * 1000
    p99, own_p99 = float(np.percentile(e2e, 99)), float(np.percentile(own, 99))
    return {
        "latency_rate_eps": float(rate),
        "latency_sent_eps": float(achieved),
        "latency_p50_ms": float(np.percentile(e2e, 50)),
        "latency_p99_ms": p99,
        "latency_max_ms": float(e2e.max()),
        "worker_latency_p50_ms": float(np.percentile(own, 50)),
        "worker_latency_p99_ms": own_p99,
        # how much of the tail is waiting outside the worker's batches (issue 27's target)
        "ratio_e2e_worker_p99": p99 / own_p99,
        "latency_to_send_p50_ms": float(np.percentile(to_send, 50)),
        "latency_to_send_p99_ms": float(np.percentile(to_send, 99)),
        "n_latency_events": float(n - skip),
    }


def run_latency_sweep(run: Run, saturation_eps: float, library: str) -> dict[str, Any]:
    """:func:`run_latency` at 50 events/s and at each of ``plan.latency_fractions`` of the
    saturation rate. The flat figures are the highest rate's, except ``latency_p99_ms``: the
    worst p99 of any rate (the target holds at every rate)."""
    rates = [LIGHT_LOAD_EPS, *(saturation_eps * f for f in run.plan.latency_fractions)]
    sweep = []
    for rate in rates:
        say(f"{library} latency at {rate:,.0f} events/s")
        sweep.append(run_latency(run, rate, library))
        say(
            f"{library} at {rate:,.0f} events/s: p50 {sweep[-1]['latency_p50_ms']:.1f} ms,"
            f" p99 {sweep[-1]['latency_p99_ms']:.1f} ms"
        )
    return {
        **sweep[-1],
        "latency_p99_ms": max(s["latency_p99_ms"] for s in sweep),
        "latency_sweep": sweep,
    }


class _Laps:
    """Seconds spent per named stage of a loop, lap after lap."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.totals[stage] += now - self.last
        self.last = now


def run_naive(run: Run, input_topic: str) -> tuple[float, dict[str, float]]:
    """Events/s of a one-event-at-a-time loop in this process (models loaded once, up front),
    and the mean ms per event of each of its steps."""
    settings = run.settings("naive", input_topic, run.topics.make("naive-out"))
    serving = build_serving(open_store(settings.store), settings)
    model_set, strategies = serving.model_set, serving.strategies
    versions = [m.version for m in model_set.models]
    available = np.ones(len(versions), dtype=bool)
    for model in model_set.models:
        model.predict_outputs(run.rows[:1])  # first calls build thread pools: not per event
    producer = kafka_io.output_producer(settings)
    consumer = kafka_io.input_consumer(settings)
    done, started = 0, 0.0
    laps = _Laps()
    deadline = time.monotonic() + 300
    try:
        while done < run.plan.n_naive:
            if time.monotonic() > deadline:
                raise BenchError(f"the naive loop handled {done} of {run.plan.n_naive} in 300s")
            polled = consumer.poll(timeout_ms=500, max_records=1)
            if not started and polled:
                started = laps.last = time.perf_counter()  # the group join is not per event
            laps("poll")
            for tp, records in polled.items():
                for r in records:
                    doc = orjson.loads(r.value)
                    x = np.asarray([doc["features"]], dtype=np.float64)
                    laps("decode")
                    outputs = []
                    for model in model_set.models:
                        outputs.append(model.predict_outputs(x))
                        laps(f"predict.{model.name}")
                    P = np.stack(outputs)
                    combined = {s.name: s.combiner.combine(P) for s in strategies}
                    laps("combine")
                    [value] = encode_predictions(
                        ids=[doc["id"]],
                        layout=model_set.layout,
                        strategy=strategies[0].name,
                        combined=combined[strategies[0].name],
                        model_names=model_set.names,
                        model_versions=versions,
                        P=P,
                        available=available,
                        failure_kinds={},
                        shadows={s.name: combined[s.name] for s in strategies[1:]},
                        latency_ms=0.0,
                    )
                    laps("encode")
                    producer.send(settings.topics.output, key=r.key, value=value)
                    producer.flush()
                    laps("send_flush")
                    consumer.commit({tp: OffsetAndMetadata(r.offset + 1, None, -1)})
                    laps("commit")
                    done += 1
        took = time.perf_counter() - started
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)
    return done / took, {k: v / done * 1000 for k, v in laps.totals.items()}


# -- the whole run ----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    try:
        import crc32c  # noqa: F401

        has_crc32c = True
    except ImportError:
        has_crc32c = False
    return {
        "cpu_count": os.cpu_count() or 0,
        "python": platform.python_version(),
        "kafka_python": kafka.__version__,
        "crc32c": has_crc32c,
        "platform": platform.platform(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def run_bench(bootstrap: str, plan: BenchPlan, workdir: Path) -> dict[str, Any]:
    """Every phase against the broker at ``bootstrap``, for each Kafka library; the figures as
    one flat-ish dict (kafka-python's at the top level, as before; each library's under
    ``by_library``)."""
    started = time.perf_counter()
    result: dict[str, Any] = {"machine": machine_info()}
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    say(f"training {', '.join(plan.models)} and publishing them with the fitted strategies")
    rows = build_store(store, plan.seed, models=plan.models)
    n = plan.n_events
    keys, values = saturation_events(rows, n)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="streamfuse-bench")
    topics = Topics(admin, uuid.uuid4().hex[:8])
    by_library: dict[str, dict[str, Any]] = {}
    with ExitStack() as cleanup:
        cleanup.callback(admin.close)
        cleanup.callback(topics.delete)
        run = Run(bootstrap, admin, topics, store, workdir, plan, rows)
        run.dead_letter = topics.make("dlq")

        def fill(role: str) -> Filled:
            say(f"filling a topic with {n:,} events for {role}")
            filled = fill_gated(bootstrap, topics.make(role), keys, values)
            cleanup.callback(filled.close)
            return filled

        say("profiling the pipeline stages in process")
        stages, prediction = profile_pipeline(
            run.settings("profile", "in", "out"), values[: plan.batch_events], plan.profile_repeats
        )
        for library, tag in LIBRARY_TAGS.items():
            by_library[library] = run_library(run, library, tag, fill, prediction)
        say(f"now the naive loop, {plan.n_naive} events")
        naive_in = fill("naive-in")
        naive_in.open()  # no group to wait for: the loop reads from the first event
        naive_eps, naive_ms = run_naive(run, naive_in.topic)

    kp = by_library["kafka-python"]
    rd = by_library.get("confluent-kafka", {})
    pipeline_eps = plan.batch_events / (stages["process"])
    result.update(
        n_events=n,
        n_naive_events=plan.n_naive,
        batch_events=plan.batch_events,
        max_wait_ms=plan.max_wait_ms,
        event_bytes=len(values[0]),
        prediction_bytes=len(prediction),
        **{k: v for k, v in kp.items() if k != "kafka_ms"},
        naive_eps=naive_eps,
        pipeline_eps=pipeline_eps,
        **(
            {"pipeline_eps_traced": plan.batch_events / stages["process.traced"]}
            if "process.traced" in stages
            else {}
        ),
        ratio_worker_ceiling=kp["worker_eps"] / kp["ceiling_eps"],
        ratio_worker_naive=kp["worker_eps"] / naive_eps,
        ratio_eos_alo=kp["worker_eos_eps"] / kp["worker_eps"],
        ratio_two_one=kp["two_workers_eps"] / kp["worker_eps"],
        profile_ms={k: v * 1000 for k, v in stages.items()},
        kafka_ms=kp["kafka_ms"],
        naive_ms=naive_ms,
        by_library=by_library,
        duration_s=time.perf_counter() - started,
    )
    if rd:
        result.update(
            ratio_librdkafka_kafka_python=rd["worker_eps"] / kp["worker_eps"],
            ratio_librdkafka_pipeline=rd["worker_eps"] / pipeline_eps,
            ratio_eos_alo_librdkafka=rd["worker_eos_eps"] / rd["worker_eps"],
            ratio_eos_spanning_alo_librdkafka=rd["worker_eos_spanning_eps"] / rd["worker_eps"],
            latency_p99_ms_librdkafka=rd["latency_p99_ms"],
            ratio_e2e_worker_p99_librdkafka=rd["ratio_e2e_worker_p99"],  # at 50% of saturation
        )
    result["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["targets"] = targets(result)
    return result


LIBRARY_TAGS = {"kafka-python": "", "confluent-kafka": "-rd"}
LIGHT_LOAD_EPS = 50.0  # the lowest rate of the latency sweep
SPANNING_INTERVAL_MS = 100  # kafka.transaction_interval_ms of the spanning run (Kafka Streams')


def run_library(run: Run, library: str, tag: str, fill: Any, prediction: bytes) -> dict[str, Any]:
    """Ceiling, both guarantees, two workers and latency with one Kafka library."""
    ceiling_in = fill(f"ceiling{tag}-in")
    say(f"{library} ceiling: consume -> produce -> flush -> commit, no models")
    output = run.topics.make(f"ceiling{tag}-out")
    if library == "kafka-python":
        kafka_ms = run_ceiling(run, ceiling_in, prediction, output)
    else:
        from benchmarks.rdkafka import run_ceiling_librdkafka

        settings = run.settings(f"ceiling{tag}", ceiling_in.topic, output, library=library)
        kafka_ms = run_ceiling_librdkafka(settings, ceiling_in, prediction, run.commit_timeout())
    ceiling_eps = events_per_second(output_stamps(run.bootstrap, output, ceiling_in.n_events))
    say(f"{library} ceiling {ceiling_eps:,.0f} events/s; now the worker, at_least_once")
    alo = run_workers(run, f"alo{tag}", fill(f"alo{tag}-in"), library=library)
    say(f"{library} worker {alo.eps:,.0f} events/s; now exactly_once")
    eos = run_workers(
        run, f"eos{tag}", fill(f"eos{tag}-in"), guarantee="exactly_once", library=library
    )
    spanning: dict[str, float] = {}
    if library == "confluent-kafka":
        say(f"{library} exactly_once {eos.eps:,.0f} events/s; now transactions spanning batches")
        spanning["worker_eos_spanning_eps"] = run_workers(
            run,
            f"eos-span{tag}",
            fill(f"eos-span{tag}-in"),
            guarantee="exactly_once",
            library=library,
            transaction_interval_ms=SPANNING_INTERVAL_MS,
        ).eps
    say(f"{library} exactly_once {eos.eps:,.0f} events/s; now two workers")
    two = run_workers(run, f"two{tag}", fill(f"two{tag}-in"), n_processes=2, library=library)
    say(f"{library} two workers {two.eps:,.0f} events/s; now latency")
    latency = run_latency_sweep(run, alo.eps, library)
    say(f"{library} worst p99 {latency['latency_p99_ms']:.1f} ms")
    return {
        "ceiling_eps": ceiling_eps,
        "worker_eps": alo.eps,
        "worker_eos_eps": eos.eps,
        **spanning,
        "two_workers_eps": two.eps,
        **latency,
        "rss_peak_mb": alo.rss_mib,
        "worker_metrics": alo.metrics,
        "kafka_ms": kafka_ms,
    }


# -- command line -----------------------------------------------------------------------------


def plan_from(args: argparse.Namespace) -> BenchPlan:
    plan = QUICK if args.quick else BenchPlan()
    overrides: dict[str, Any] = {"seed": args.seed}
    if args.events is not None:
        overrides["n_events"] = args.events
    if args.naive_events is not None:
        overrides["n_naive"] = args.naive_events
    if args.latency_seconds is not None:
        overrides["latency_s"] = args.latency_seconds
    if args.models is not None:
        overrides["models"] = tuple(m.strip() for m in args.models.split(",") if m.strip())
    return replace(plan, **overrides)


def main(args: argparse.Namespace) -> int:
    """Run the benchmark; print the tables, write ``--json``. Returns the exit code."""
    plan = plan_from(args)
    unknown = sorted(set(plan.models) - set(BENCH_MODELS))
    if unknown or len(plan.models) < 2:
        print(f"benchmarks: --models takes two or more of {', '.join(BENCH_MODELS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if min(plan.n_events, plan.n_naive) < 1 or plan.latency_s <= 0:
        print(
            "benchmarks: --events, --naive-events and --latency-seconds must be > 0",
            file=sys.stderr,
        )
        return 2
    with ExitStack() as stack:
        if args.workdir is not None:
            workdir = args.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(tempfile.mkdtemp(prefix="streamfuse-bench-"))
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        try:
            bootstrap = stack.enter_context(broker(args.bootstrap, args.kafka_port))
            result = run_bench(bootstrap, plan, workdir)
        except (WorkerError, KafkaError) as exc:
            print(f"benchmarks: {exc}", file=sys.stderr)
            return 1
    print(render(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0
