"""``python -m benchmarks --quick`` against the test broker: it runs and emits every figure.

No timing assertions: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks import harness as bench
from benchmarks.__main__ import COMMANDS, build_parser
from benchmarks.models import avro_batch, decode_seconds, event_value
from tests.support.kafka import Broker
from worker.batch.decode import Schema, decode_batch
from worker.batch.framed import decode_mixed

FIGURES = (
    "n_events",
    "n_naive_events",
    "ceiling_eps",
    "worker_eps",
    "worker_eos_eps",
    "two_workers_eps",
    "naive_eps",
    "latency_rate_eps",
    "latency_sent_eps",
    "latency_p50_ms",
    "latency_p99_ms",
    "worker_latency_p50_ms",
    "worker_latency_p99_ms",
    "latency_to_send_p50_ms",
    "latency_to_send_p99_ms",
    "ratio_worker_ceiling",
    "ratio_worker_naive",
    "ratio_eos_alo",
    "ratio_two_one",
    "rss_peak_mb",
    "event_bytes",
    "prediction_bytes",
    "pipeline_eps",
    "ratio_librdkafka_kafka_python",
    "ratio_librdkafka_pipeline",
    "ratio_eos_alo_librdkafka",
    "ratio_eos_spanning_alo_librdkafka",
    "latency_p99_ms_librdkafka",
    "ratio_e2e_worker_p99",
    "ratio_e2e_worker_p99_librdkafka",
)
PER_LIBRARY = ("ceiling_eps", "worker_eps", "worker_eos_eps", "two_workers_eps", "latency_p99_ms")
PROFILE_STAGES = (
    "decode",
    "decode.avro",
    "predict.rf",
    "predict.hgb",
    "predict.mlp",
    "predict.fanout",
)
PROFILE_STAGES += ("combine.soft_vote", "encode", "process")


def parse(*argv: str) -> argparse.Namespace:
    """As ``python -m benchmarks`` parses its command line."""
    return build_parser().parse_args(argv)


@pytest.mark.kafka
@pytest.mark.slow
def test_quick_bench_emits_every_figure(
    kafka: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, work = tmp_path / "bench.json", tmp_path / "work"
    argv = ["--quick", "--bootstrap", kafka.bootstrap, "--json", str(out)]
    assert bench.main(parse(*argv, "--workdir", str(work))) == 0

    result = json.loads(out.read_text(encoding="utf-8"))
    for name in FIGURES:
        assert isinstance(result[name], int | float), name
        assert result[name] > 0, name
    machine = result["machine"]
    assert machine["cpu_count"] > 0
    assert machine["python"]
    assert machine["kafka_python"]
    assert set(PROFILE_STAGES) <= set(result["profile_ms"])
    for section in ("profile_ms", "kafka_ms", "naive_ms", "worker_metrics"):
        assert result[section], section
        assert all(value > 0 for value in result[section].values()), section
    assert set(result["kafka_ms"]) == {"poll", "send", "flush", "commit"}
    assert set(result["targets"]) == set(bench.TARGETS)
    assert set(result["by_library"]) == {"kafka-python", "confluent-kafka"}
    for library, figures in result["by_library"].items():
        for name in PER_LIBRARY:
            assert figures[name] > 0, (library, name)
        assert set(figures["kafka_ms"]) == {"poll", "send", "flush", "commit"}, library
        sweep = figures["latency_sweep"]  # 50 events/s, then the quick plan's 50% of saturation
        assert round(sweep[0]["latency_rate_eps"]) == 50, library
        assert len(sweep) == 2 and sweep[1]["latency_rate_eps"] > 50, library
        assert figures["latency_p99_ms"] == max(r["latency_p99_ms"] for r in sweep), library
    assert result["by_library"]["confluent-kafka"]["worker_eos_spanning_eps"] > 0
    table = capsys.readouterr().out
    assert "| worker / ceiling |" in table
    assert "| confluent-kafka / kafka-python worker |" in table
    assert "| stage | ms per batch | µs per event |" in table
    assert "| library | rate, events/s | p50 | p99 |" in table


def test_decode_is_timed_for_json_and_the_same_events_as_avro() -> None:
    rows = [[float(i), -1.5 * i, 2.0**i] for i in range(6)]
    values = [event_value(f"e-{i}", row, 1.7e9 + i) for i, row in enumerate(rows)]
    schema = Schema(3)
    framed, source, fields = avro_batch(decode_batch(values, schema), schema)
    decoded = decode_mixed(framed, schema, 1 << 20, source, fields)
    assert decoded.X.tolist() == rows and decoded.ids == [f"e-{i}" for i in range(6)]
    assert decoded.ts.tolist() == [1.7e9 + i for i in range(6)] and not decoded.rejections
    seconds = decode_seconds(values, schema, 1 << 20, repeats=3)
    assert set(seconds) == {"decode", "decode.avro"} and min(seconds.values()) > 0


def test_quick_plan_and_overrides() -> None:
    quick = bench.plan_from(parse("--quick"))
    full = bench.plan_from(parse())
    given = bench.plan_from(parse("--events", "1000", "--seed", "3"))
    assert quick.n_events < full.n_events
    assert quick.n_naive < full.n_naive
    assert quick.latency_s < full.latency_s
    assert (given.n_events, given.seed, given.n_naive) == (1000, 3, full.n_naive)
    assert quick.batch_events == full.batch_events == 512
    assert quick.max_wait_ms == full.max_wait_ms == 20


def test_targets_say_met_or_missed() -> None:
    figures = {
        "ratio_worker_ceiling": 0.8,
        "ratio_worker_naive": 50.0,
        "ratio_eos_alo": 0.85,
        "latency_p99_ms": 51.0,
    }
    met = {name: spec["met"] for name, spec in bench.targets(figures).items()}
    assert met == {
        "ratio_worker_ceiling": True,
        "ratio_worker_naive": False,
        "ratio_eos_alo": True,
        "latency_p99_ms": False,
    }


def test_bench_takes_an_ensemble_of_boosted_models(capsys: pytest.CaptureFixture[str]) -> None:
    plan = bench.plan_from(parse("--models", "xgboost,lightgbm,mlp"))
    assert plan.models == ("xgboost", "lightgbm", "mlp")
    assert bench.plan_from(parse()).models == ("rf", "hgb", "mlp")
    assert bench.main(parse("--models", "rf,catboost")) == 2
    assert "--models takes two or more of" in capsys.readouterr().err


def test_every_command_has_a_main() -> None:
    import importlib

    for name, (module, _) in COMMANDS.items():
        assert callable(importlib.import_module(module).main), name
