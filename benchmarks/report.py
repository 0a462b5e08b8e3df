"""The figures of ``python -m benchmarks``: targets and the markdown report."""

from __future__ import annotations

from typing import Any

__all__ = ["TARGETS", "render", "targets"]


TARGETS = {  # figure: (threshold, "min" or "max")
    "ratio_worker_ceiling": (0.7, "min"),
    "ratio_worker_naive": (100.0, "min"),
    "ratio_eos_alo": (0.85, "min"),
    "latency_p99_ms": (50.0, "max"),
    # issue 13: the librdkafka transport
    "ratio_librdkafka_kafka_python": (2.5, "min"),
    "ratio_librdkafka_pipeline": (0.8, "min"),
    "ratio_eos_alo_librdkafka": (0.9, "min"),
    "ratio_eos_spanning_alo_librdkafka": (0.9, "min"),
    "latency_p99_ms_librdkafka": (50.0, "max"),
    # issue 27: the tail close to the compute, at 50% of saturation
    "ratio_e2e_worker_p99": (1.5, "max"),
    "ratio_e2e_worker_p99_librdkafka": (1.5, "max"),
}


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (threshold, kind) in TARGETS.items():
        if name not in result:
            continue
        value = float(result[name])
        met = value >= threshold if kind == "min" else value <= threshold
        out[name] = {"value": value, "target": threshold, "kind": kind, "met": met}
    return out


def render(result: dict[str, Any]) -> str:
    """The figures as markdown tables."""
    t = result["targets"]

    def target(name: str) -> str:
        spec = t.get(name)
        if spec is None:
            return ""
        sign = ">=" if spec["kind"] == "min" else "<="
        return f"{sign} {spec['target']:g}: {'met' if spec['met'] else 'MISSED'}"

    eps = "{:,.0f} events/s".format
    rows = [
        ("ceiling (consume, produce, flush, commit)", eps(result["ceiling_eps"]), ""),
        ("worker, at_least_once", eps(result["worker_eps"]), ""),
        ("worker, exactly_once", eps(result["worker_eos_eps"]), ""),
        ("two workers, 2 partitions", eps(result["two_workers_eps"]), ""),
        ("naive, one event at a time", eps(result["naive_eps"]), ""),
        (
            "worker / ceiling",
            f"{result['ratio_worker_ceiling']:.2f}",
            target("ratio_worker_ceiling"),
        ),
        ("worker / naive", f"{result['ratio_worker_naive']:.0f}", target("ratio_worker_naive")),
        ("exactly_once / at_least_once", f"{result['ratio_eos_alo']:.2f}", target("ratio_eos_alo")),
        ("two workers / one", f"{result['ratio_two_one']:.2f}", ""),
        (
            f"latency p50 at {result['latency_sent_eps']:,.0f} events/s",
            f"{result['latency_p50_ms']:.1f} ms",
            "",
        ),
        (
            "latency p99, worst of the rates below",
            f"{result['latency_p99_ms']:.1f} ms",
            target("latency_p99_ms"),
        ),
        (
            "latency until the worker sent it p50 / p99 (its CreateTime)",
            f"{result['latency_to_send_p50_ms']:.1f} / {result['latency_to_send_p99_ms']:.1f} ms",
            "",
        ),
        (
            "latency inside the worker p50 / p99 (its latency_ms)",
            f"{result['worker_latency_p50_ms']:.1f} / {result['worker_latency_p99_ms']:.1f} ms",
            "",
        ),
        (
            "latency p99 end to end / inside the worker, at 50% of saturation",
            f"{result['ratio_e2e_worker_p99']:.2f}",
            target("ratio_e2e_worker_p99"),
        ),
        ("peak RSS of one worker (VmHWM)", f"{result['rss_peak_mb']:.0f} MiB", ""),
        ("in-process pipeline (decode, models, combine, encode)", eps(result["pipeline_eps"]), ""),
    ]
    decode_ms = result["profile_ms"]
    if "decode.avro" in decode_ms:
        rows.append(
            (
                "Avro decode / JSON decode, per event",
                f"{decode_ms['decode.avro'] / decode_ms['decode']:.2f}",
                "<= 1.5",
            )
        )
    if "pipeline_eps_traced" in result:
        rows.append(("in-process pipeline, tracing on", eps(result["pipeline_eps_traced"]), ""))
    rd = result.get("by_library", {}).get("confluent-kafka")
    if rd:
        rows += [
            ("confluent-kafka ceiling", eps(rd["ceiling_eps"]), ""),
            ("confluent-kafka worker, at_least_once", eps(rd["worker_eps"]), ""),
            (
                "confluent-kafka worker, exactly_once, a transaction per batch",
                eps(rd["worker_eos_eps"]),
                "",
            ),
            (
                "confluent-kafka worker, exactly_once, transactions spanning 100 ms (the default)",
                eps(rd["worker_eos_spanning_eps"]),
                "",
            ),
            ("confluent-kafka two workers", eps(rd["two_workers_eps"]), ""),
            (
                "confluent-kafka / kafka-python worker",
                f"{result['ratio_librdkafka_kafka_python']:.2f}",
                target("ratio_librdkafka_kafka_python"),
            ),
            (
                "confluent-kafka worker / in-process pipeline",
                f"{result['ratio_librdkafka_pipeline']:.2f}",
                target("ratio_librdkafka_pipeline"),
            ),
            (
                "confluent-kafka exactly_once per batch / at_least_once",
                f"{result['ratio_eos_alo_librdkafka']:.2f}",
                target("ratio_eos_alo_librdkafka"),
            ),
            (
                "confluent-kafka exactly_once spanning 100 ms / at_least_once",
                f"{result['ratio_eos_spanning_alo_librdkafka']:.2f}",
                target("ratio_eos_spanning_alo_librdkafka"),
            ),
            (
                f"confluent-kafka latency p50 at {rd['latency_sent_eps']:,.0f} events/s",
                f"{rd['latency_p50_ms']:.1f} ms",
                "",
            ),
            (
                "confluent-kafka latency p99, worst of the rates below",
                f"{rd['latency_p99_ms']:.1f} ms",
                target("latency_p99_ms_librdkafka"),
            ),
            (
                "confluent-kafka latency p99 end to end / inside the worker, at 50%",
                f"{result['ratio_e2e_worker_p99_librdkafka']:.2f}",
                target("ratio_e2e_worker_p99_librdkafka"),
            ),
        ]
    m = result["machine"]
    lines = [
        f"benchmarks: {result['n_events']:,} events of {result['event_bytes']} bytes, "
        f"batches of {result['batch_events']}, max_wait_ms {result['max_wait_ms']}; "
        f"{m['cpu_count']} CPUs, Python {m['python']}, kafka-python {m['kafka_python']}, "
        f"load {m['loadavg_1m_at_start']} -> {m['loadavg_1m_at_end']}",
        "",
        "| figure | value | target |",
        "|---|---:|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
        f"Per batch of {result['batch_events']} events (medians):",
        "",
        "| stage | ms per batch | µs per event |",
        "|---|---:|---:|",
    ]
    n = result["batch_events"]
    per_batch = {**result["profile_ms"], **{f"kafka.{k}": v for k, v in result["kafka_ms"].items()}}
    if rd:
        per_batch.update({f"librdkafka.{k}": v for k, v in rd["kafka_ms"].items()})
    for name, ms in per_batch.items():
        per_event = "" if name.endswith(".row") else f"{ms * 1000 / n:.1f}"
        lines.append(f"| {name} | {ms:.2f} | {per_event} |")
    lines += [
        "",
        "End-to-end latency by input rate (ms): until the worker sent the prediction (its"
        " CreateTime), then the worker's own latency_ms, from its batch's first record:",
        "",
        "| library | rate, events/s | p50 | p99 | max | to send p99 | in worker p50"
        " | in worker p99 | p99 / in worker p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for library, figures in result.get("by_library", {}).items():
        for r in figures.get("latency_sweep", []):
            lines.append(
                f"| {library} | {r['latency_sent_eps']:,.0f} | {r['latency_p50_ms']:.1f}"
                f" | {r['latency_p99_ms']:.1f} | {r['latency_max_ms']:.1f}"
                f" | {r['latency_to_send_p99_ms']:.1f} | {r['worker_latency_p50_ms']:.1f}"
                f" | {r['worker_latency_p99_ms']:.1f}"
                f" | {r['ratio_e2e_worker_p99']:.2f} |"
            )
    lines += ["", "The naive loop, mean ms per event:", "", "| step | ms |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in result["naive_ms"].items()]
    lines += ["", "The at_least_once worker's own histograms (means over the run):", ""]
    lines += ["| metric | mean |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in result["worker_metrics"].items()]
    return "\n".join(lines)
