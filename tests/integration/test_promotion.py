"""Champion/challenger against the real broker: a truly better challenger is promoted exactly once
by two workers of one group, both serve it, a restarted worker starts with it; a challenger that is
not significantly better is never promoted.

The data are breast_cancer's 114 test rows (``trained_store``). The bad champion is a
``weighted_sum`` of the random forest alone with a bias of 5 on class 0, so it says "malignant"
for every event (43 of the 114 are); ``soft_vote`` is right on 111. The merely better
challenger: the champion is the random forest alone (109 right) and ``soft_vote`` (111) the
challenger; they disagree on 4 of these rows, 3 of them for ``soft_vote``, so no subset of the
stream can give a one-sided McNemar p-value below P(X >= 3 | Bin(3, 1/2)) = 1/8, whatever the
order the labels join in: better, never significantly.
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from model_store import ModelStore
from tests.support.kafka import Broker, wait_for
from tests.support.worker import WorkerProcess, events, produce, write_config

pytestmark = pytest.mark.kafka

BAD = {"name": "weighted_sum", "params": {"weights": [1, 0, 0, 0], "bias": [5.0, 0.0]}}
RF_ALONE = {"name": "weighted_average", "params": {"weights": [1, 0, 0, 0]}}


def scrape(config: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    port = yaml.safe_load(config.read_text())["metrics"]["port"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def active(config: Path) -> list[str]:
    return [
        dict(labels)["strategy"]
        for (name, labels), value in scrape(config).items()
        if name == "streamfuse_active_strategy_info" and value == 1
    ]


def value(config: Path, series: str, /, **labels: str) -> float:
    return scrape(config).get((series, tuple(sorted(labels.items()))), float("nan"))


def labelled(
    X: np.ndarray, y: np.ndarray, prefix: str
) -> tuple[list[str], list[bytes], list[bytes]]:
    ids, values = events(X, prefix)
    labels = [orjson.dumps({"id": i, "label": int(v)}) for i, v in zip(ids, y, strict=True)]
    return ids, values, labels


def configs(tmp_path: Path, store: Path, kafka: Broker, t: Any, group: str, n: int, strategy: dict,
            shadows: tuple[str, ...], promote: dict[str, Any]) -> list[Path]:  # fmt: skip
    paths = []
    for i in range(n):
        path = write_config(
            tmp_path / f"c{i}.yaml",
            store=store,
            bootstrap=kafka.bootstrap,
            topics=t,
            group=group,
            shadows=shadows,
            kafka={"instance_id": str(i), "consumer": {"session_timeout_ms": 6000}},
            batch={"max_events": 32, "max_wait_ms": 20},
        )
        config = yaml.safe_load(path.read_text())
        config["strategy"] = {**strategy, "promote": {"interval_s": 0.2, **promote}}
        path.write_text(yaml.safe_dump(config))
        paths.append(path)
    return paths


def test_a_better_challenger_is_promoted_once_by_the_group_and_kept_at_restart(
    kafka: Broker, topics: Any, group_factory: Any, trained_store: Path, tmp_path: Path
) -> None:
    store_dir = tmp_path / "model-store"
    shutil.copytree(trained_store, store_dir)
    test = ModelStore(store_dir).load_dataset("test").arrays
    t = topics(partitions=2)
    group = group_factory("promote")
    paths = configs(tmp_path, store_dir, kafka, t, group, 2, BAD, ("soft_vote", "hard_vote"),
                    {"min_labels": 40, "margin": 0.2, "alpha": 0.001})  # fmt: skip
    workers = [WorkerProcess(p, tmp_path / f"w{i}.log").start() for i, p in enumerate(paths)]
    try:
        for w in workers:
            w.wait_assigned(timeout=240)
        X, y = np.tile(test["X"], (2, 1)), np.tile(test["y"], 2)  # 228 events, 2 partitions
        ids, values, labels = labelled(X, y, "p")
        keys = [i.encode() for i in ids]
        produce(kafka.bootstrap, t.input, values, keys)
        produce(kafka.bootstrap, t.labels, labels, keys)
        wait_for(
            lambda: all(active(p) == ["soft_vote"] for p in paths),
            timeout=180,
            what="both workers serving soft_vote",
        )
        history = ModelStore(store_dir).decision_history(group)
        promotions = [
            value(p, "streamfuse_strategy_promotions_total", strategy="soft_vote") for p in paths
        ]
        # events produced after the decision are published with the new strategy
        ids2, values2, _ = labelled(test["X"][:20], test["y"][:20], "after")
        produce(kafka.bootstrap, t.input, values2, [i.encode() for i in ids2])
        out = kafka.consume_all(t.output, len(ids) + 20, timeout=60)
        workers[1].stop()
        restarted = WorkerProcess(paths[1], tmp_path / "w1b.log").start()
        workers.append(restarted)
        wait_for(lambda: bool(active(paths[1])), timeout=240, what="the restarted worker's metrics")
        assert active(paths[1]) == ["soft_vote"]
    finally:
        for w in workers:
            w.stop()
    assert [d.strategy for d in history] == ["soft_vote"]
    record = history[0].record
    assert record["previous"] == "weighted_sum" and record["action"] == "promote"
    assert record["figures"]["gain"] >= 0.2 and record["figures"]["p_value"] < 0.001
    assert sorted(promotions) == [0.0, 1.0]
    after = [orjson.loads(r.value) for r in out if r.key.startswith(b"after-")]
    assert len(after) == 20 and {d["strategy"] for d in after} == {"soft_vote"}
    assert {d["strategy"] for d in map(orjson.loads, (r.value for r in out))} <= {
        "weighted_sum",
        "soft_vote",
    }
    decider = next(w for w, n in zip(workers, promotions, strict=False) if n == 1)
    assert "promoted strategy soft_vote over weighted_sum" in decider.text()
    assert "serving strategy soft_vote: decision v1" in restarted.text()


def test_a_challenger_not_significantly_better_is_never_promoted(
    kafka: Broker, topics: Any, group_factory: Any, trained_store: Path, tmp_path: Path
) -> None:
    store_dir = tmp_path / "model-store"
    shutil.copytree(trained_store, store_dir)
    test = ModelStore(store_dir).load_dataset("test").arrays
    t = topics()
    group = group_factory("nopromote")
    [path] = configs(tmp_path, store_dir, kafka, t, group, 1, RF_ALONE, ("soft_vote",),
                     {"min_labels": 30, "margin": 0.0, "alpha": 0.05})  # fmt: skip
    worker = WorkerProcess(path, tmp_path / "w.log").start()
    try:
        worker.wait_assigned(timeout=240)
        ids, values, labels = labelled(test["X"], test["y"], "n")
        keys = [i.encode() for i in ids]
        produce(kafka.bootstrap, t.input, values, keys)
        produce(kafka.bootstrap, t.labels, labels, keys)
        wait_for(
            lambda: value(path, "streamfuse_labels_joined_total") == len(ids),
            timeout=60,
            what="every label joined",
        )
        joined_accuracy = {
            name: value(path, "streamfuse_rolling_metric", scope="strategy", name=name,
                        metric="accuracy")
            for name in ("weighted_average", "soft_vote")
        }  # fmt: skip
        still = active(path)
        promoted = value(path, "streamfuse_strategy_promotions_total", strategy="soft_vote")
    finally:
        worker.stop()
    assert joined_accuracy["soft_vote"] > joined_accuracy["weighted_average"]  # better, but
    assert still == ["weighted_average"] and promoted == 0
    assert ModelStore(store_dir).load_decision(group) is None
