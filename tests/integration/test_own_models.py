"""Your own models and data, end to end against the real broker (issue 14's "Done when").

Real data that ships with scikit-learn (breast_cancer, as a CSV with named columns): an
XGBoost and a LightGBM model trained with their own libraries and saved in their native
formats, a scikit-learn forest exported to ONNX and kept as skops, all four imported with
``streamfuse store publish``, strategies fitted with ``streamfuse fit``, the worker started,
and every event's prediction compared with the libraries' own outputs and the stored
strategy. Then ``streamfuse train --data`` on the same CSV, served with ``{name: value}``
features.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnxruntime as ort
import orjson
import pytest
import skops.io as sio
import xgboost as xgb
import yaml
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

import combiners
from model_store import ModelStore
from tests.support.kafka import Broker, unique
from tests.support.worker import Topics, WorkerProcess, free_port, write_config
from worker import cli

pytestmark = pytest.mark.kafka

BC = load_breast_cancer()
NAMES = [n.replace(" ", "_") for n in BC.feature_names]


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*NAMES, "diagnosis"])
        writer.writerows([*row, int(label)] for row, label in zip(X.tolist(), y, strict=True))
    return path


def streamfuse(*argv: object) -> None:
    code = cli.main([str(a) for a in argv])
    assert code == 0, argv


def serve_and_read(
    kafka: Broker, config: Path, t: Topics, group: str, test_csv: Path, n: int, tmp_path: Path
) -> list[dict]:
    """Point the config at this test's topics, run the worker, produce the CSV, read back."""
    data = yaml.safe_load(config.read_text())
    data["kafka"] = {"bootstrap_servers": kafka.bootstrap, "group_id": group}
    data["topics"] = {"input": t.input, "output": t.output, "labels": t.labels,
                      "dead_letter": t.dead_letter}  # fmt: skip
    data["metrics"] = {"host": "127.0.0.1", "port": free_port()}
    config.write_text(yaml.safe_dump(data))
    worker = WorkerProcess(config, tmp_path / "worker.log").start()
    try:
        worker.wait_assigned()
        streamfuse("produce", "--config", config, "--data", test_csv, "--target", "diagnosis",
                   "--labels-delay", "0", "--id-prefix", "bc")  # fmt: skip
        out = kafka.consume_all(t.output, n, timeout=120)
    finally:
        worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.text()
    docs = [orjson.loads(r.value) for r in out]
    assert sorted(d["id"] for d in docs) == sorted(f"bc-{i}" for i in range(n))
    return sorted(docs, key=lambda d: int(d["id"].split("-")[1]))


def test_published_models_served_equal_to_their_own_libraries(
    kafka: Broker, topics, group_factory, tmp_path: Path
) -> None:
    X, y = BC.data, BC.target
    train, held, test = slice(0, 340), slice(340, 450), slice(450, None)
    xgb_model = xgb.XGBClassifier(n_estimators=60, max_depth=4, random_state=0).fit(
        X[train], y[train]
    )
    xgb_model.save_model(tmp_path / "xgb.json")
    lgb_model = lgb.LGBMClassifier(n_estimators=60, random_state=0, verbose=-1)
    lgb_model.fit(X[train], y[train]).booster_.save_model(tmp_path / "lgb.txt")
    rf = RandomForestClassifier(50, max_depth=8, random_state=0).fit(X[train], y[train])
    sio.dump(rf, tmp_path / "rf.skops")
    onx = to_onnx(rf, X[:1].astype(np.float32), options={id(rf): {"zipmap": False}})
    (tmp_path / "rf.onnx").write_bytes(onx.SerializeToString())
    (tmp_path / "names.txt").write_text("\n".join(NAMES))
    store = tmp_path / "store"
    for name, file, framework in [
        ("xgb", "xgb.json", "xgboost"),
        ("lgb", "lgb.txt", "lightgbm"),
        ("rf", "rf.skops", "sklearn"),
        ("rf_onnx", "rf.onnx", "onnx"),
    ]:
        streamfuse("store", "--store", store, "publish", name, tmp_path / file,
                   "--framework", framework, "--feature-names", tmp_path / "names.txt")  # fmt: skip
    heldout = write_csv(tmp_path / "heldout.csv", X[held], y[held])
    test_csv = write_csv(tmp_path / "test.csv", X[test], y[test])
    streamfuse("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")
    docs = serve_and_read(
        kafka, tmp_path / "streamfuse.yaml", topics(), group_factory("own"), test_csv,
        len(y[test]), tmp_path,
    )  # fmt: skip

    # The libraries' own outputs on the same rows (CSV round trip included).
    Xt = np.loadtxt(test_csv, delimiter=",", skiprows=1)[:, :-1]
    # One intra-op thread, as runtime.model_threads: 1 gives the worker: onnxruntime splits the
    # trees over its threads and sums the parts in float32, so the count moves the last bits.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        onx.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    own = {
        "xgb": xgb_model.predict_proba(Xt),
        "lgb": lgb_model.predict_proba(Xt),
        "rf": rf.predict_proba(Xt),
        "rf_onnx": session.run(["probabilities"], {"X": Xt.astype(np.float32)})[0],
    }
    for name, expected in own.items():
        got = np.array([d["models"][name]["scores"] for d in docs])
        np.testing.assert_array_equal(got, expected.astype(np.float64), err_msg=name)
    s = ModelStore(store)
    P = np.stack(
        [s.load(n, threads=1).predict_outputs(Xt) for n in ("xgb", "lgb", "rf", "rf_onnx")]
    )
    stored = s.load_strategy("soft_vote")
    assert stored.fitted_on == {"xgb": 1, "lgb": 1, "rf": 1, "rf_onnx": 1}
    combined = combiners.load_state(stored.meta, stored.arrays).combine(P)
    np.testing.assert_allclose(np.array([d["scores"] for d in docs]), combined, rtol=0, atol=1e-12)
    assert all(d["strategy"] == "soft_vote" and not d["degraded"] for d in docs)


def test_train_on_a_csv_served_with_named_features(
    kafka: Broker, topics, group_factory, tmp_path: Path
) -> None:
    data = write_csv(tmp_path / "bc.csv", BC.data, BC.target)
    store = tmp_path / "store"
    streamfuse("train", "--data", data, "--target", "diagnosis", "--store", store,
               "--models", "rf,xgboost,lightgbm")  # fmt: skip
    s = ModelStore(store)
    assert s.manifest("xgboost")["input_schema"]["feature_names"] == NAMES
    test = s.load_dataset("test").arrays
    test_csv = write_csv(tmp_path / "test.csv", test["X"], test["y"])
    docs = serve_and_read(
        kafka, tmp_path / "streamfuse.yaml", topics(), group_factory("own-train"), test_csv,
        len(test["y"]), tmp_path,
    )  # fmt: skip
    P = np.stack([s.load(n).predict_outputs(test["X"]) for n in ("rf", "xgboost", "lightgbm")])
    stored = s.load_strategy("soft_vote")
    combined = combiners.load_state(stored.meta, stored.arrays).combine(P)
    np.testing.assert_allclose(np.array([d["scores"] for d in docs]), combined, rtol=0, atol=1e-12)


def test_produce_checks_its_topic_first_and_claims_no_labels_it_did_not_send(
    kafka: Broker, topics, group_factory, trained_store: Path, tmp_path: Path, capsys
) -> None:
    t = topics()
    missing = Topics(unique("absent"), t.output, t.labels, t.dead_letter)
    config = write_config(
        tmp_path / "absent.yaml", store=trained_store, bootstrap=kafka.bootstrap,
        topics=missing, group=group_factory("produce"),
    )  # fmt: skip
    started = time.monotonic()
    code = cli.main(["produce", "--config", str(config), "--dataset", "breast_cancer"])
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        f"streamfuse: config key 'topics.input': topic {missing.input!r} does not exist; "
        "start the worker, or create it"
    ]
    assert took < 15, took  # kafka-python's producer waited 60 s for the topic's metadata
    # Rows without a --target column: events only, and the summary says only that.
    X = ModelStore(trained_store).load_dataset("test").arrays["X"][:5]
    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="") as f:
        csv.writer(f).writerows([[f"c{j}" for j in range(X.shape[1])], *X.tolist()])
    config = write_config(
        tmp_path / "ok.yaml", store=trained_store, bootstrap=kafka.bootstrap, topics=t,
        group=group_factory("produce"),
    )  # fmt: skip
    code = cli.main(["produce", "--config", str(config), "--data", str(rows)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip() == f"produced 5 events to {t.input}"
    assert "taken in file order" in err  # demo models have no feature names
    sent = [orjson.loads(r.value) for r in kafka.consume_all(t.input, 5, timeout=30)]
    assert [d["features"] for d in sent] == X.tolist()
