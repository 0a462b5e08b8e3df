"""The benchmark runs (tiny sizes): not a timing assertion."""

from __future__ import annotations

import pytest

from benchmarks.combine import main, run_benchmark
from combiners import available_combiners


def test_run_benchmark_reports_every_strategy() -> None:
    results = run_benchmark(n_events=16, n_outputs=3, repeats=2)
    assert list(results) == available_combiners()
    for median, best in results.values():
        assert 0 < best <= median


def test_main_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--events", "8", "--outputs", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "strategy" in out
    assert "soft_vote" in out
