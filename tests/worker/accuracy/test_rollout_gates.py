"""Rollout gates on recorded evidence, and the record's moves (pure logic, checked by hand and
against scipy)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest, ttest_rel

from worker.accuracy.gates import ARM_NAMES, Gates, Vitals, judge, new_evidence
from worker.batch.layout import Block
from worker.service.rollout_record import (
    MoveError,
    moved,
    new_record,
    reaches_last,
    share_of,
)

BLOCK = Block(name="y", kind="classification", start=0, stop=3, classes=[0, 1, 2])
CALM = Vitals(elapsed_s=600.0, p99_ms=5.0, n_batches=100, n_errors=0)


def onehot(idx: np.ndarray) -> np.ndarray:
    return np.eye(3)[idx % 3]


def evidence(n: int, champion_wrong: int, candidate_wrong: int, gates: Gates) -> Any:
    """``n`` labelled events: the champion wrong on its first ``champion_wrong``, the candidate
    on its last ``candidate_wrong`` (disjoint when they fit)."""
    y = np.arange(n) % 3
    champion = onehot(np.where(np.arange(n) < champion_wrong, y + 1, y))
    candidate = onehot(np.where(np.arange(n) >= n - candidate_wrong, y + 1, y))
    found = new_evidence(gates, BLOCK)
    found.push(dict(zip(ARM_NAMES, (champion, candidate), strict=True)), y)
    return found


def test_a_clearly_worse_candidate_is_rolled_back_with_its_figures() -> None:
    gates = Gates(min_labels=500, alpha=0.01)
    verdict = judge(gates, evidence(100, 2, 20, gates), CALM, to_last=False)
    assert verdict.action == "rollback" and "significantly worse" in verdict.why
    p = binomtest(20, 22, 0.5, alternative="greater").pvalue  # 20 discordant for the champion
    assert verdict.figures["p_worse"] == pytest.approx(p, rel=1e-5)
    assert verdict.figures["n"] == 100
    assert verdict.figures["champion_score"] == 0.98 and verdict.figures["candidate_score"] == 0.8


def test_the_step_holds_until_its_labels_and_duration_are_met() -> None:
    gates = Gates(min_labels=200, min_duration_s=60, alpha=0.05)
    few = judge(gates, evidence(100, 5, 5, gates), CALM, to_last=False)
    assert few.action == "hold" and few.why == "100 of 200 labels"
    early = Vitals(elapsed_s=30.0, p99_ms=5.0, n_batches=10, n_errors=0)
    young = judge(gates, evidence(300, 5, 5, gates), early, to_last=False)
    assert young.action == "hold" and young.why == "30 of 60 s"
    ready = judge(gates, evidence(300, 5, 5, gates), CALM, to_last=False)
    assert ready.action == "advance"


def test_promote_if_better_needs_significance_to_reach_the_last_step() -> None:
    gates = Gates(min_labels=100, min_duration_s=0, alpha=0.05, promote_if_better=True)
    equal = evidence(300, 6, 6, gates)
    assert judge(gates, equal, CALM, to_last=False).action == "advance"
    held = judge(gates, equal, CALM, to_last=True)
    assert held.action == "hold" and "not significantly better" in held.why
    better = judge(gates, evidence(300, 30, 3, gates), CALM, to_last=True)
    p = binomtest(30, 33, 0.5, alternative="greater").pvalue
    assert better.action == "advance" and better.figures["p_better"] == pytest.approx(p, rel=1e-5)
    plain = Gates(min_labels=100, min_duration_s=0, alpha=0.05)
    assert judge(plain, equal, CALM, to_last=True).action == "advance"


def test_latency_and_error_limits_roll_back_before_any_label() -> None:
    gates = Gates(min_labels=100, max_p99_ms=50.0, max_error_rate=0.01)
    empty = new_evidence(gates, BLOCK)
    slow = Vitals(elapsed_s=5.0, p99_ms=80.0, n_batches=10, n_errors=0)
    verdict = judge(gates, empty, slow, to_last=False)
    assert verdict.action == "rollback" and "p99 80.0 ms over the limit 50 ms" in verdict.why
    failing = Vitals(elapsed_s=5.0, p99_ms=5.0, n_batches=50, n_errors=1)
    verdict = judge(gates, empty, failing, to_last=False)
    assert verdict.action == "rollback" and "error rate 0.02" in verdict.why
    assert judge(gates, empty, CALM, to_last=False).action == "hold"


def test_paired_loss_gates_use_the_paired_t_test() -> None:
    gates = Gates(min_labels=50, min_duration_s=0, test="paired_loss", alpha=0.01)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    champion = np.full((200, 3), 0.1)
    champion[np.arange(200), y] = 0.8
    candidate = champion.copy()
    candidate[np.arange(200), y] = rng.uniform(0.2, 0.5, 200)  # less sure of the right class
    found = new_evidence(gates, BLOCK)
    found.push({"champion": champion, "candidate": candidate}, y)
    verdict = judge(gates, found, CALM, to_last=False)
    loss_a, loss_b = -np.log(champion[np.arange(200), y]), -np.log(candidate[np.arange(200), y])
    p = ttest_rel(loss_b, loss_a, alternative="greater").pvalue
    assert verdict.action == "rollback"
    assert verdict.figures["p_worse"] == pytest.approx(p, rel=1e-5, abs=1e-300)


def test_gates_are_checked_and_kept_in_the_record() -> None:
    with pytest.raises(ValueError, match="test"):
        Gates(test="coin")
    with pytest.raises(ValueError, match="alpha"):
        Gates(alpha=1.5)
    gates = Gates(min_labels=10, max_p99_ms=20.0, promote_if_better=True)
    assert Gates.from_record({**gates.to_record(), "unknown": 1}) == gates


def test_the_record_moves_through_its_steps_and_back() -> None:
    record = new_record({"model": "rf", "version": 3}, [1, 5, 100], Gates(), "cli", 10.0)
    assert share_of(record) == 1.0 and record["history"][0]["action"] == "start"
    assert not reaches_last(record)
    second = moved(record, "advance", "w1", 20.0, "ok", {"n": 5})
    assert second["step"] == 1 and share_of(second) == 5.0 and second["step_started_at"] == 20.0
    assert reaches_last(second) and record["step"] == 0  # the old record is left as it was
    third = moved(second, "advance", "w1", 30.0)
    done = moved(third, "advance", "w2", 40.0)
    assert done["status"] == "done" and share_of(done) == 100.0
    assert [h["action"] for h in done["history"]] == ["start", "advance", "advance", "done"]
    paused = moved(second, "pause", "op", 25.0)
    assert share_of(paused) == 5.0
    with pytest.raises(MoveError, match="cannot advance a rollout that is paused"):
        moved(paused, "advance", "w1", 26.0)
    resumed = moved(paused, "resume", "op", 50.0)
    assert resumed["status"] == "running" and resumed["step_started_at"] == 50.0
    back = moved(resumed, "rollback", "w1", 60.0, "worse", {"p_worse": 0.001})
    assert back["status"] == "rolled_back" and share_of(back) == 0.0
    assert back["history"][-1]["figures"] == {"p_worse": 0.001}
    with pytest.raises(MoveError):
        moved(back, "resume", "op", 70.0)
    assert share_of(moved(paused, "abort", "op", 27.0)) == 0.0
