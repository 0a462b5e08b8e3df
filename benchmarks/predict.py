"""Predict cost per 512-row batch of each framework through the store, and its load cost.

``python -m benchmarks predict [--repeats 200] [--json out.json]``: the bench's data
set (``make_classification``, 32 float features, 2 classes, seed 0, 3,000 training rows, as
:func:`benchmarks.models.build_store`), a random forest (100 trees, depth 12),
histogram gradient boosting (100 iterations), XGBoost (100 trees, depth 6), LightGBM (100
trees, 31 leaves) and the same random forest through ONNX (skl2onnx, zipmap off). Each is
published to a temporary store, loaded with one thread (``runtime.model_threads: 1``) and
timed on the same 512-row batch, one call at a time on an otherwise idle process: median and
the 10th-90th percentile spread, plus the median of five ``ModelStore.load`` calls (file
reads, checksums, every structural check, the library's own parse) and, for XGBoost and
LightGBM, of the store's own checks alone. Then the worker's predict stage (the models in
parallel, one thread each, :class:`worker.inference.fanout.Fanout`) for the bench's ensemble
(RF + HGB + MLP) and for XGBoost + LightGBM + the same MLP, as events/s at the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "measure"]


def _timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def _summary(ms: list[float]) -> dict[str, float]:
    q = np.percentile(ms, [10, 50, 90])
    return {"p10_ms": float(q[0]), "median_ms": float(q[1]), "p90_ms": float(q[2])}


def measure(repeats: int = 200, seed: int = 0) -> dict[str, dict[str, Any]]:
    import lightgbm as lgb
    import xgboost as xgb
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from threadpoolctl import threadpool_limits

    from model_store import ModelStore
    from model_store._lightgbm_io import lightgbm_text
    from model_store._xgboost_io import xgboost_document

    X, y = make_classification(
        n_samples=5_000, n_features=32, n_informative=12, n_redundant=4, flip_y=0.02,
        random_state=seed,
    )  # fmt: skip
    X_tr, y_tr, batch = X[:3000], y[:3000], X[4000:4512]
    with threadpool_limits(limits=1):
        rf = RandomForestClassifier(100, max_depth=12, random_state=seed, n_jobs=1).fit(X_tr, y_tr)
        hgb = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
        xgbc = xgb.XGBClassifier(n_estimators=100, max_depth=6, random_state=seed, n_jobs=1)
        lgbc = lgb.LGBMClassifier(n_estimators=100, random_state=seed, n_jobs=1, verbose=-1)
        onx = to_onnx(rf, X_tr[:1].astype(np.float32), options={id(rf): {"zipmap": False}})
        models: dict[str, tuple[Any, str]] = {
            "rf": (rf, "sklearn"),
            "hgb": (hgb.fit(X_tr, y_tr), "sklearn"),
            "xgboost": (xgbc.fit(X_tr, y_tr), "xgboost"),
            "lightgbm": (lgbc.fit(X_tr, y_tr), "lightgbm"),
            "rf_onnx": (onx, "onnx"),
        }
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1):
        store = ModelStore(Path(tmp))
        for name, (model, framework) in models.items():
            store.publish(name, model, framework=framework)
            loaded = store.load(name, threads=1)
            ms = _timed(partial(loaded.predict_outputs, batch), repeats)
            load_ms = _timed(partial(store.load, name, threads=1), 5)
            size = sum(f["size"] for f in store.manifest(name)["files"].values())
            row: dict[str, Any] = {
                **_summary(ms),
                "load_median_ms": statistics.median(load_ms),
                "file_bytes": size,
            }
            files = (Path(tmp) / name / "1").iterdir()
            raw = next(p for p in files if p.name != "manifest.json").read_bytes()
            where: dict[str, Any] = {"limits": store.limits, "name": name, "version": 1}
            check: Callable[[], Any] | None = None
            if framework == "xgboost":
                check = partial(xgboost_document, raw, fmt="json", filename="model.json", **where)
            elif framework == "lightgbm":
                check = partial(lightgbm_text, raw, filename="model.txt", **where)
            if check is not None:
                row["checks_median_ms"] = statistics.median(_timed(check, 5))
            results[name] = row
        onnx_out = store.load("rf_onnx").predict_outputs(batch)
        rf_out = store.load("rf").predict_outputs(batch)
        results["rf_onnx"]["max_abs_diff_vs_rf"] = float(np.abs(onnx_out - rf_out).max())
        results.update(_ensembles(store, X_tr, y_tr, batch, repeats, seed))
    return results


def _ensembles(
    store: Any, X_tr: np.ndarray, y_tr: np.ndarray, batch: np.ndarray, repeats: int, seed: int
) -> dict[str, dict[str, Any]]:
    """The worker's predict stage (every model on its own thread, as ``inference/fanout.py``
    runs them, one thread each) for the bench's ensemble and for XGBoost + LightGBM + MLP."""
    from benchmarks.models import MLP_SPEC
    from worker.inference.fanout import Fanout
    from worker.tools.train import fit_torch

    store.publish("mlp", fit_torch(MLP_SPEC, X_tr, [("mlp", y_tr)], seed, epochs=100),
                  framework="torch", spec=MLP_SPEC)  # fmt: skip
    out = {}
    ensembles = {
        "rf+hgb+mlp": ("rf", "hgb", "mlp"),
        "xgboost+lightgbm+mlp": ("xgboost", "lightgbm", "mlp"),
    }
    for label, names in ensembles.items():
        fns = [store.load(n, threads=1).predict_outputs for n in names]
        fanout = Fanout(list(names), timeout_s=10.0, threads_per_model=1)
        try:
            ms = _timed(partial(fanout.predict, fns, batch, 2), repeats)
        finally:
            fanout.close()
        row: dict[str, Any] = _summary(ms)
        row["events_per_s_at_median"] = len(batch) / (row["median_ms"] / 1e3)
        out[f"ensemble {label}"] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks predict", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per model")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    results = measure(args.repeats)
    print("| model | median ms / 512 rows | p10-p90 ms | load ms | checks ms | file bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        if name.startswith("ensemble"):
            continue
        checks = f"{r['checks_median_ms']:.1f}" if "checks_median_ms" in r else ""
        print(
            f"| {name} | {r['median_ms']:.2f} | {r['p10_ms']:.2f}-{r['p90_ms']:.2f} | "
            f"{r['load_median_ms']:.1f} | {checks} | {r['file_bytes']:,} |"
        )
    print(f"\nrf_onnx vs rf: max |difference| {results['rf_onnx']['max_abs_diff_vs_rf']:.2e}\n")
    print("| predict stage (parallel fan-out) | median ms / 512 rows | p10-p90 ms | events/s |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        if name.startswith("ensemble"):
            print(
                f"| {name[9:]} | {r['median_ms']:.2f} | {r['p10_ms']:.2f}-{r['p90_ms']:.2f} | "
                f"{r['events_per_s_at_median']:,.0f} |"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
