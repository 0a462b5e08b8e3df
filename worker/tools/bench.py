"""``streamfuse bench``: how fast the worker serves your models, on your broker.

Your config and store, in this process: ``--events`` feature events (the store's test split,
or the rows of ``--data``) go to an input topic made for the run; the worker runs with your
settings on it (its own output, dead-letter topic and group; labels and promotion off, so
nothing of yours is read or written), a progress bar follows what it delivers, and one table
gives the figures. The run's topics are deleted at the end. The comparative benchmarks (the
Kafka ceiling, both libraries, latency sweeps, scale-out) live in the repository's
``benchmarks/``, not in the package.

Module imports stay light: the CLI adds the arguments without loading the models' libraries.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from worker.config import Settings
    from worker.service.worker import Worker

__all__ = ["add_arguments", "bench_settings", "main"]

STALL_S = 120.0  # no event delivered for this long: the run stops with an error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="your worker's YAML config")
    parser.add_argument("--events", type=int, default=20_000, help="events to send (20,000)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="send a CSV or Parquet file's rows (default: the store's test split)",
    )


def bench_settings(settings: Settings, run_id: str) -> Settings:
    """``settings`` on the run's own topics and group, without labels, promotion or /metrics."""
    name = f"streamfuse-bench-{run_id}"
    topics = settings.topics.model_copy(
        update={"input": f"{name}-in", "output": f"{name}-out", "dead_letter": f"{name}-dlq"}
    )
    return settings.model_copy(
        update={
            "topics": topics.model_copy(update={"labels": None, "create": False}),
            "kafka": settings.kafka.model_copy(update={"group_id": name}),
            "strategy": settings.strategy.model_copy(update={"promote": None}),
            "metrics": settings.metrics.model_copy(update={"enabled": False}),
        }
    )


def _events(settings: Settings, data: Path | None, n: int) -> list[bytes]:
    import orjson

    from worker.inference.serving import open_store
    from worker.tools.produce import check_dataset, dataset_events, file_events

    store = open_store(settings.store)
    model = settings.models[0].name
    if data is not None:
        rows, _ = file_events(store, model, data, None, "bench")
    else:
        check_dataset(store, None)
        rows, _ = dataset_events(store, model, "bench")
    now = time.time()
    return [orjson.dumps({**rows[i % len(rows)], "id": f"bench-{i}", "ts": now}) for i in range(n)]


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def _total(registry: CollectorRegistry, name: str) -> float:
    """The sum of a counter's samples over every label value."""
    return sum(s.value for family in registry.collect() for s in family.samples if s.name == name)


def _delivered(registry: CollectorRegistry) -> tuple[float, float]:
    """Events published and dead-lettered so far."""
    return (
        _total(registry, "streamfuse_events_published_total"),
        _total(registry, "streamfuse_events_dead_lettered_total"),
    )


def _mean(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A histogram's mean so far (0 before any observation)."""
    count = _sample(registry, f"{name}_count", **labels)
    return _sample(registry, f"{name}_sum", **labels) / count if count else 0.0


def main(args: argparse.Namespace) -> int:
    """Run the bench; print the table. Returns the exit code."""
    from kafka import KafkaProducer
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError
    from prometheus_client import CollectorRegistry

    from worker.config import load_settings
    from worker.errors import ConfigError, WorkerError
    from worker.service.process import limit_threads
    from worker.service.worker import Worker
    from worker.transport.kafka_python.clients import admin_client, common_config

    if args.events < 1:
        raise ConfigError("--events", "must be at least 1")
    settings = bench_settings(load_settings(args.config), uuid.uuid4().hex[:8])
    t = settings.topics
    values = _events(settings, args.data, args.events)
    limit_threads(settings.runtime.model_threads)
    admin = admin_client(settings)
    names = [t.input, t.output, t.dead_letter]
    try:
        admin.create_topics([NewTopic(n, t.partitions, t.replication_factor) for n in names])
        producer = KafkaProducer(**common_config(settings, "-bench", linger_ms=5))
        for i, value in enumerate(values):
            producer.send(t.input, key=f"bench-{i}".encode(), value=value)
        producer.flush()
        producer.close()
        registry = CollectorRegistry()
        worker = Worker(settings, registry)
        figures = _run(worker, registry, len(values))
    except KafkaError as exc:
        raise WorkerError(f"bench on {settings.kafka.bootstrap_servers}: {exc}") from exc
    finally:
        try:
            admin.delete_topics(names)
            admin.delete_groups([settings.kafka.group_id])
        except KafkaError:
            pass  # best effort: uniquely named, harmless
        admin.close()
    print(_table(settings, registry, figures))
    return 0


def _run(worker: Worker, registry: CollectorRegistry, n: int) -> dict[str, float]:
    """Run ``worker`` in a thread until ``n`` events are published or dead-lettered; the
    throughput counts from the first delivered batch to the last (the group join and the
    models' first calls are left out)."""
    from tqdm import tqdm

    from worker.errors import WorkerError

    failed: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    try:
        worker.connect()
    except BaseException:
        worker.close()
        raise
    thread = threading.Thread(target=run, name="streamfuse-bench", daemon=True)
    began = time.monotonic()
    thread.start()
    done = first = 0.0
    started = last_change = began
    try:
        quiet = not sys.stderr.isatty()  # as produce: a bar for a terminal, not for a log
        with tqdm(total=n, desc="bench", unit="events", file=sys.stderr, disable=quiet) as bar:
            while done < n and thread.is_alive():
                time.sleep(0.02)  # sampling the counters: there is no event to wait on
                now_done, now = sum(_delivered(registry)), time.monotonic()
                if now_done > done:
                    if not done:
                        first, started = now_done, now
                    bar.update(int(now_done - done))
                    done, last_change = now_done, now
                elif now - last_change > STALL_S:
                    raise WorkerError(f"no event delivered for {STALL_S:.0f}s ({done:.0f} of {n})")
    finally:
        worker.stop()
        thread.join(60)
    if failed:
        raise failed[0]
    if done < n:
        raise WorkerError(f"the worker stopped after {done:.0f} of {n} events")
    if done > first and last_change > started:
        return {"eps": (done - first) / (last_change - started)}
    return {"eps": done / (last_change - began)}  # all in one batch: the join included


def _table(settings: Settings, registry: CollectorRegistry, figures: dict[str, float]) -> str:
    """The figures as one markdown table, under a line saying what ran where."""
    published, dead = _delivered(registry)
    batches = _sample(registry, "streamfuse_batch_size_count")
    k = settings.kafka
    rows = [
        ("events", f"{published + dead:,.0f} ({published:,.0f} published, {dead:,.0f} "
                   "dead-lettered)"),
        ("events/s, first delivered batch to last", f"{figures['eps']:,.0f}"),
        ("batches, mean size", f"{batches:,.0f}, {_mean(registry, 'streamfuse_batch_size'):,.1f}"),
        ("batch, poll to commit (mean)",
         f"{_mean(registry, 'streamfuse_batch_processing_seconds') * 1000:.1f} ms"),
    ]  # fmt: skip
    for ref in settings.models:
        ms = _mean(registry, "streamfuse_model_predict_seconds", model=ref.name) * 1000
        rows.append((f"predict {ref.name}, per batch (mean)", f"{ms:.2f} ms"))
    for strategy in (settings.strategy, *settings.shadow_strategies):
        ms = _mean(registry, "streamfuse_combine_seconds", strategy=strategy.name) * 1000
        rows.append((f"combine {strategy.name}, per batch (mean)", f"{ms:.2f} ms"))
    degraded = _total(registry, "streamfuse_events_degraded_total")
    rows.append(("degraded events (a model left out)", f"{degraded:,.0f}"))
    return "\n".join([
        f"streamfuse bench: {k.bootstrap_servers}, {k.library}, {k.processing_guarantee}, "
        f"batches up to {settings.batch.max_events} events, "
        f"tracing {'on' if settings.tracing.otlp_endpoint else 'off'}",
        "",
        "| figure | value |",
        "|---|---:|",
        *(f"| {a} | {b} |" for a, b in rows),
    ])  # fmt: skip
