"""Champion/challenger promotion without a broker: the paired tests against hand computation and
scipy, the store's compare-and-set decisions, and two deciders on one store that never flap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from scipy import stats

from model_store import ConflictError, IntegrityError, ModelStore, generate_key, read_key
from worker.accuracy.challenger import (
    PairedEvidence,
    best_challenger,
    mcnemar_greater,
    paired_t_greater,
)
from worker.accuracy.labels import Joined
from worker.batch.layout import Block
from worker.cli import main
from worker.config import settings_from_dict
from worker.errors import ConfigError
from worker.inference.models import ModelSet
from worker.inference.serving import Serving
from worker.inference.strategies import build_strategies
from worker.metrics import Metrics
from worker.service.promotion import Promotion

BLOCK = Block("", "classification", 0, 2, (0, 1))


def outcomes(b: int, c: int, same: int) -> tuple[np.ndarray, np.ndarray]:
    """Champion and challenger 0/1 outcomes: b champion-only, c challenger-only right."""
    champ = np.r_[np.ones(b), np.zeros(c), np.ones(same)]
    chall = np.r_[np.zeros(b), np.ones(c), np.ones(same)]
    return champ, chall


def test_mcnemar_by_hand_and_scipy() -> None:
    champ, chall = outcomes(1, 9, 40)
    b, c, p = mcnemar_greater(champ, chall)
    assert (b, c) == (1, 9)
    assert p == pytest.approx((1 + 10) / 1024)  # P(X >= 9), X ~ Bin(10, 1/2)
    for b, c in [(3, 4), (10, 25), (0, 0), (7, 2)]:
        _, _, p = mcnemar_greater(*outcomes(b, c, 5))
        expected = stats.binomtest(c, b + c, 0.5, alternative="greater").pvalue if b + c else 1.0
        assert p == pytest.approx(expected)


def test_paired_t_equals_scipy(rng: np.random.Generator) -> None:
    a = rng.exponential(1.0, 200)
    b = a - 0.1 + rng.normal(0, 0.5, 200)
    gain, p = paired_t_greater(a, b)
    assert gain == pytest.approx(np.mean(a - b))
    assert p == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)


def joined_batch(outputs: dict[str, np.ndarray], y: np.ndarray) -> Joined:
    k = len(y)
    return Joined(list(range(k)), np.zeros((1, k, 2)), np.ones((1, k), bool), outputs, y)


def scores(pred: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - pred, pred]).astype(np.float64)


def test_evidence_window_and_the_verdict() -> None:
    ev = PairedEvidence(["champ", "good", "same"], BLOCK, "mcnemar", window=100)
    y = np.r_[np.ones(60), np.zeros(60)].astype(np.int64)
    champ = y.copy()
    champ[:30] = 1 - champ[:30]  # wrong on the first 30
    good = y.copy()
    good[:3] = 1 - good[:3]
    ev.push({"champ": scores(champ), "good": scores(good), "same": scores(champ)}, y)
    assert ev.n == 100  # the last 100 of 120
    a, b = ev.pair("champ", "good")
    assert a.sum() == 90 and b.sum() == 100  # champion wrong on rows 20..29, good on none
    kw: dict[str, Any] = {"min_labels": 50, "margin": 0.05, "alpha": 0.05}
    verdict = best_challenger(ev, "champ", **kw)
    assert verdict is not None and verdict.challenger == "good"
    assert verdict.gain == pytest.approx(0.1) and verdict.p_value == pytest.approx(2**-10)
    assert best_challenger(ev, "champ", **{**kw, "margin": 0.11}) is None
    assert best_challenger(ev, "champ", **{**kw, "min_labels": 101}) is None
    assert best_challenger(ev, "champ", **{**kw, "alpha": 0.0009}) is None
    assert best_challenger(ev, "champ", **kw, exclude=["good"]) is None  # "same" never wins


def test_decisions_are_compare_and_set(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "s")
    assert store.load_decision("g") is None and store.active_decision_version("g") is None
    assert store.publish_decision("g", {"strategy": "a"}, expected=None) == 1
    with pytest.raises(ConflictError) as info:
        store.publish_decision("g", {"strategy": "b"}, expected=None)
    assert info.value.current == 1
    assert store.publish_decision("g", {"strategy": "b"}, expected=1) == 2
    assert [d.strategy for d in store.decision_history("g")] == ["a", "b"]
    decision = store.load_decision("g")
    assert decision is not None and decision.strategy == "b" and decision.version == 2


def test_decisions_are_signed_and_checksummed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "s", key=read_key(generate_key(tmp_path / "k")))
    store.publish_decision("g", {"strategy": "a"}, expected=None)
    decision = store.load_decision("g")
    assert decision is not None and decision.signed
    (tmp_path / "s" / "_decisions" / "g" / "1" / "decision.json").write_text('{"strategy": "b"}')
    with pytest.raises(IntegrityError):
        store.load_decision("g")


def settings_for(trained: Any, **promote: Any) -> Any:
    return settings_from_dict(
        {
            "store": str(trained.root),
            "models": [{"name": n} for n in trained.model_names],
            "strategy": {"name": "hard_vote", "promote": {"min_labels": 40, **promote}},
            "shadow_strategies": [{"name": "soft_vote"}, {"name": "weighted_average"}],
            "kafka": {"group_id": "grp"},
        },
        environ={},
    )


def test_two_deciders_agree_once_and_a_restart_keeps_it(trained_copy: Any) -> None:
    settings = settings_for(trained_copy, interval_s=3600)
    store = ModelStore(trained_copy.root)
    model_set = ModelSet(store, settings.models)
    strategies = build_strategies(store, model_set, settings.strategy, settings.shadow_strategies)
    base = Serving(model_set, tuple(strategies))
    workers = []
    for _ in range(2):
        registry = CollectorRegistry()
        promotion = Promotion(store, settings, Metrics(registry), base)
        workers.append((promotion, promotion.start(base), registry))
    assert all(s.active.name == "hard_vote" for _, s, _ in workers)
    # a labelled batch where soft_vote is right and hard_vote wrong on 45 of 60 events
    n_classes = base.layout.n_outputs
    y = np.arange(60) % n_classes
    right = np.eye(n_classes)[y]
    wrong = np.eye(n_classes)[(y + 1) % n_classes]
    hard = np.where((np.arange(60) < 45)[:, None], wrong, right)
    batch = joined_batch({"hard_vote": hard, "soft_vote": right, "weighted_average": hard}, y)
    for promotion, _, _ in workers:
        promotion.observe(batch)
    (first, s1, r1), (second, s2, r2) = workers
    promoted = first.step(s1)
    assert promoted is not None and promoted.active.name == "soft_vote"
    assert [s.name for s in promoted.shadows] == ["hard_vote", "weighted_average"]
    assert second.step(s2) is None  # its own publish loses: it adopts at the next step
    adopted = second.step(s2)
    assert adopted is not None and adopted.active.name == "soft_vote"
    assert [d.strategy for d in store.decision_history("grp")] == ["soft_vote"]
    counts = [r.get_sample_value("streamfuse_strategy_promotions_total", {"strategy": "soft_vote"})
              for r in (r1, r2)]  # fmt: skip
    assert counts == [1.0, 0.0]
    assert r2.get_sample_value("streamfuse_active_strategy_info", {"strategy": "soft_vote"}) == 1
    record = store.load_decision("grp")
    assert record is not None and record.record["figures"]["n"] == 60
    assert record.record["figures"]["gain"] == pytest.approx(0.75)
    restarted = Promotion(store, settings, Metrics(CollectorRegistry()), base).start(base)
    assert restarted.active.name == "soft_vote"
    # the operator reverts: workers go back and never promote soft_vote again by themselves
    assert main(["store", "--store", str(trained_copy.root), "strategy", "revert",
                 "--record", "grp"]) == 0  # fmt: skip
    first._next_read = 0.0
    back = first.step(promoted)
    assert back is not None and back.active.name == "hard_vote"
    first.observe(batch)
    assert first.step(back) is None and "soft_vote" in first.held


def test_promote_settings_are_checked(trained: Any) -> None:
    with pytest.raises(ConfigError) as info:
        settings_for(trained, window=20)
    assert info.value.key == "strategy.promote.window"
    with pytest.raises(ConfigError) as info:
        settings_for(trained, tset="mcnemar")
    assert info.value.key == "strategy.promote.tset"
    with pytest.raises(ConfigError) as info:
        settings_from_dict(
            {"models": [{"name": "a"}], "strategy": {"name": "soft_vote", "promote": {}}},
            environ={},
        )
    assert info.value.key == "strategy.promote" and "shadow" in info.value.problem
    assert settings_for(trained).decision_name == "grp"
