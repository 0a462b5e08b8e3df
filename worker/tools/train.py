"""``streamfuse train``: base models, fitted strategies, held-out and test sets, a config.

Deterministic for a given seed. The base models are a random forest, histogram gradient
boosting, a linear model (scaled logistic or ridge regression) and a torch MLP; data sets with
several tasks (``diabetes``, ``synthetic``) also get two torch multi-task networks and the
``multitask`` fusion strategy over them. Every strategy is fitted on the held-out split, with the
base models' outputs as the store serves them (each model is loaded back before use, first in a
trial child within ``store.limits`` as start-up loads it), and scored with the models on the test
split.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

import combiners
from model_store import ModelStore, ModelStoreError, build_torch_model
from worker.accuracy.scoring import score, score_table
from worker.config import StoreSettings
from worker.errors import ConfigError
from worker.inference.store import open_store
from worker.inference.strategies import HELDOUT_DATASET
from worker.tools.datasets import Dataset, TaskSpec, load_dataset, split_indices
from worker.tools.fit import (
    CLASSIFICATION_STRATEGIES,
    REGRESSION_STRATEGIES,
    fit_strategies,
    publish_reference,
    strategies_for,
    write_config,
)
from worker.tools.tabular import read_labelled

__all__ = [
    "BASE_MODELS",
    "CLASSIFICATION_STRATEGIES",
    "REGRESSION_STRATEGIES",
    "ModelTrainError",
    "TrainReport",
    "dataset_from_file",
    "train",
]

#: What ``--models`` may name; the demo data sets train the first four by default.
BASE_MODELS = ("rf", "hgb", "linear", "mlp", "xgboost", "lightgbm")
DEFAULT_MODELS = ("rf", "hgb", "linear", "mlp")

MULTITASK_MODELS = {"mt_a": [64], "mt_b": [32, 32]}


@dataclass
class TrainReport:
    dataset: str
    kind: str
    metric: str
    rows: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)  # scope, name
    config_path: Path | None = None

    def table(self) -> str:
        return score_table(self.rows)


def dataset_from_file(
    path: str | Path,
    target: str,
    *,
    task: str | None = None,
    seed: int = 0,
    heldout_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Dataset:
    """The user's CSV or Parquet file as a data set, split like the demo ones."""
    data = read_labelled(path, target, task=task)
    ds = Dataset(
        Path(path).stem,
        data.X,
        data.y,
        TaskSpec(target, data.task, data.classes),
        feature_names=data.feature_names,
    )
    ds.splits = split_indices(ds, seed, heldout_fraction, test_fraction)
    return ds


class ModelTrainError(ConfigError):
    """A base model could not be trained, or the store refused it: one line naming the model
    (exit 2), and nothing of the run is in the store."""

    def __init__(self, name: str, problem: str) -> None:
        self.key = "--models"
        self.problem = problem
        first = problem.strip().splitlines()[0] if problem.strip() else "failed"
        Exception.__init__(self, f"model {name!r}: {first}")


def train(
    dataset: str | Dataset,
    store_dir: str | Path,
    seed: int = 0,
    config_out: str | Path | None = None,
    progress: bool = True,
    bootstrap: str = "127.0.0.1:9092",
    drift: bool = False,
    key_file: str | Path | None = None,
    models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
) -> TrainReport:
    """Train the base ``models`` on ``dataset`` (a demo name, or :func:`dataset_from_file`),
    publish them (signed with ``key_file``'s key when given), fit every strategy on the
    held-out split and write a config naming the store.

    All or nothing: every model is fitted first, then the whole run (models, data sets,
    strategies, reference profile) is published into a scratch store beside ``store_dir``,
    where the store's checks refuse what they refuse. A new (or empty) store is that scratch
    store renamed into place, then the config; an existing one gets the same publications
    only once the scratch run has succeeded. A model that fails raises
    :class:`ModelTrainError` naming it.
    """
    ds = load_dataset(dataset, seed=seed, drift=drift) if isinstance(dataset, str) else dataset
    store_dir = Path(store_dir)
    key_path = Path(key_file).resolve() if key_file is not None else None
    config_path = Path(config_out) if config_out else store_dir.parent / "streamfuse.yaml"
    torch.manual_seed(seed)
    kind = ds.task.kind
    steps = len(models) + len(strategies_for(kind)) + (len(MULTITASK_MODELS) + 1 if ds.extra else 0)
    bar = tqdm(total=steps, desc=f"train {ds.name}", disable=not progress, file=sys.stderr)
    fitted = _fit_base_models(ds, seed, models, bar)
    nets = _fit_multitask(ds, seed, bar) if ds.extra else {}
    fresh = not store_dir.exists() or (store_dir.is_dir() and not any(store_dir.iterdir()))
    store_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = store_dir.parent / f".{store_dir.name}.train-{uuid.uuid4().hex}"
    scratch.mkdir()  # as the store's own directory would be (mode from the umask)
    written: list[tuple[Path, Path]] = []  # (temporary, final) configs
    try:
        staged = open_store(StoreSettings(path=scratch, key_file=key_path))
        report = _publish_run(ds, staged, fitted, nets, seed, bar)
        bar.close()
        configs = [(config_path, list(fitted), kind)]
        if ds.extra:
            multitask = config_path.with_name(config_path.stem + "-multitask.yaml")
            configs.append((multitask, list(MULTITASK_MODELS), "multitask"))
        if fresh:
            for path, names, config_kind in configs:
                tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
                write_config(tmp, store_dir, names, config_kind, bootstrap, key_path)
                written.append((tmp, path))
            os.replace(scratch, store_dir)  # rename(2): onto a missing or empty directory
            for tmp, path in written:
                os.replace(tmp, path)
        else:
            store = open_store(StoreSettings(path=store_dir, key_file=key_path))
            report = _publish_run(ds, store, fitted, nets, seed, None)
            for path, names, config_kind in configs:
                write_config(path, store_dir, names, config_kind, bootstrap, key_path)
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
    report.config_path = config_path
    return report


def _fit_base_models(
    ds: Dataset, seed: int, models: tuple[str, ...] | list[str], bar: Any
) -> dict[str, tuple[Any, str, dict[str, Any] | None]]:
    """Each base model fitted on the train split, in memory: name -> (model, framework,
    torch spec)."""
    X_tr, y_tr = ds.part("train")
    fitted: dict[str, tuple[Any, str, dict[str, Any] | None]] = {}
    for name, (model, framework, spec) in _base_models(ds, seed, models).items():
        bar.set_postfix_str(name)
        try:
            if framework == "torch":
                assert spec is not None
                y_fit = _encode(ds, ds.splits["train"])
                model = fit_torch(spec, X_tr, [(ds.task.name, y_fit)], seed)
            elif framework in ("xgboost", "lightgbm"):
                model = model.fit(X_tr, _encode(ds, ds.splits["train"]))  # labels as 0..k-1
            else:
                model = model.fit(X_tr, y_tr)
        except Exception as exc:  # any library's failure, reported as this model's
            raise ModelTrainError(name, str(exc) or type(exc).__name__) from exc
        fitted[name] = (model, framework, spec)
        bar.update()
    return fitted


def _publish_run(
    ds: Dataset,
    store: ModelStore,
    fitted: dict[str, tuple[Any, str, dict[str, Any] | None]],
    nets: dict[str, tuple[torch.nn.Module, dict[str, Any]]],
    seed: int,
    bar: Any,
) -> TrainReport:
    """Publish the fitted models, the held-out and test sets, every strategy fitted on the
    held-out split and the reference profile into ``store``; the scores on the test split."""
    kind = ds.task.kind
    report = TrainReport(ds.name, kind, "accuracy" if kind == "classification" else "mae")
    X_tr, _ = ds.part("train")
    X_ho, _ = ds.part("heldout")
    X_te, _ = ds.part("test")
    y_ho = _encode(ds, ds.splits["heldout"])
    y_te = _encode(ds, ds.splits["test"])
    versions: dict[str, int] = {}
    for name, (model, framework, spec) in fitted.items():
        try:
            versions[name] = store.publish(
                name,
                model,
                framework=framework,
                input_schema={"n_features": ds.X.shape[1], "feature_names": ds.feature_names},
                task=kind,
                classes=list(ds.task.classes) if ds.task.classes else None,
                output_kind="proba" if kind == "classification" else "value",
                spec=spec,
            )
        except ModelStoreError as exc:
            raise ModelTrainError(name, str(exc)) from exc
    names = list(versions)
    # Loaded back as start-up loads them (a trial in a child, within store.limits): the store
    # may be one others write, and these are its files, not the objects fitted here.
    loaded = store.load_bounded([(n, versions[n], None) for n in names])
    P_ho = np.stack([m.predict_outputs(X_ho) for m in loaded])
    P_te = np.stack([m.predict_outputs(X_te) for m in loaded])
    for name, P in zip(names, P_te, strict=True):
        report.rows.append(("model", name, score(kind, P, y_te)))
    store.publish_dataset(HELDOUT_DATASET, {"X": X_ho, "y": y_ho})
    test = {"X": X_te, "y": y_te, "targets": ds.targets()[ds.splits["test"]]}
    # Its data set's name, so that produce --dataset NAME can check it is this one.
    store.publish_dataset("test", {**test, "dataset": np.asarray([ds.name])})

    def step(sname: str) -> None:
        if bar is not None:
            bar.set_postfix_str(sname)
            bar.update()

    combiners_fitted: dict[str, Any] = {}
    report.rows += fit_strategies(
        store, kind, P_ho, y_ho, versions, P_te, y_te, step, combiners_fitted
    )
    publish_reference(
        store, kind, X_tr, P_ho, names, combiners_fitted, y_ho, versions, ds.feature_names
    )  # fmt: skip
    if nets:
        _publish_multitask(ds, store, nets, seed, report)
        if bar is not None:
            bar.update()
    return report


def _encode(ds: Dataset, idx: np.ndarray) -> np.ndarray:
    """Targets in combiner form: class index for classification, values for regression."""
    y = ds.y[idx]
    if ds.task.kind == "classification":
        assert ds.task.classes is not None
        indices: np.ndarray = np.searchsorted(np.asarray(ds.task.classes), y)
        return indices
    values: np.ndarray = y.astype(np.float64)
    return values


def _base_models(
    ds: Dataset, seed: int, models: tuple[str, ...] | list[str] = DEFAULT_MODELS
) -> dict[str, tuple[Any, str, dict[str, Any] | None]]:
    unknown = sorted(set(models) - set(BASE_MODELS))
    if unknown or not models:
        raise ValueError(f"unknown models {unknown}; choose from {', '.join(BASE_MODELS)}")
    every = _every_model(ds, seed)
    every.update(_boosting_models(ds, seed, models))
    return {name: every[name] for name in models}


def _boosting_models(
    ds: Dataset, seed: int, models: tuple[str, ...] | list[str]
) -> dict[str, tuple[Any, str, None]]:
    """XGBoost and LightGBM, imported only when asked for (each is an optional extra)."""
    out: dict[str, tuple[Any, str, None]] = {}
    clf = ds.task.kind == "classification"
    if "xgboost" in models:
        try:
            import xgboost as xgb
        except ImportError as exc:
            raise ConfigError(
                "--models", "xgboost needs pip install 'streamfuse[xgboost]'"
            ) from exc
        cls = xgb.XGBClassifier if clf else xgb.XGBRegressor
        out["xgboost"] = (
            cls(n_estimators=200, max_depth=6, learning_rate=0.1, random_state=seed, n_jobs=1),
            "xgboost",
            None,
        )
    if "lightgbm" in models:
        try:
            import lightgbm as lgb
        except ImportError as exc:
            raise ConfigError(
                "--models", "lightgbm needs pip install 'streamfuse[lightgbm]'"
            ) from exc
        lcls = lgb.LGBMClassifier if clf else lgb.LGBMRegressor
        out["lightgbm"] = (
            lcls(n_estimators=200, random_state=seed, n_jobs=1, verbose=-1),
            "lightgbm",
            None,
        )
    return out


def _every_model(ds: Dataset, seed: int) -> dict[str, tuple[Any, str, dict[str, Any] | None]]:
    n_features = ds.X.shape[1]
    if ds.task.kind == "classification":
        n_classes = len(ds.task.classes or ())
        return {
            "rf": (
                RandomForestClassifier(100, max_depth=12, random_state=seed, n_jobs=1),
                "sklearn",
                None,
            ),
            "hgb": (
                HistGradientBoostingClassifier(max_iter=100, random_state=seed),
                "sklearn",
                None,
            ),
            "linear": (
                make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
                "sklearn",
                None,
            ),
            "mlp": (
                None,
                "torch",
                {
                    "arch": "mlp",
                    "n_inputs": n_features,
                    "hidden": [128, 128],
                    "n_outputs": n_classes,
                    "task": "classification",
                },
            ),
        }
    return {
        "rf": (
            RandomForestRegressor(100, max_depth=12, random_state=seed, n_jobs=1),
            "sklearn",
            None,
        ),
        "hgb": (HistGradientBoostingRegressor(max_iter=100, random_state=seed), "sklearn", None),
        "linear": (make_pipeline(StandardScaler(), Ridge(alpha=1.0)), "sklearn", None),
        "mlp": (
            None,
            "torch",
            {
                "arch": "mlp",
                "n_inputs": n_features,
                "hidden": [64, 64],
                "n_outputs": 1,
                "task": "regression",
            },
        ),
    }


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    return mean, scale


def fit_torch(
    spec: dict[str, Any],
    X: np.ndarray,
    targets: list[tuple[str, np.ndarray]],
    seed: int,
    epochs: int = 300,
) -> torch.nn.Module:
    """Train a store architecture on standardised inputs and targets, then fold the scaling
    into the first and last layers, so the served module takes raw features and returns raw
    values: the store keeps one plain architecture, with no preprocessing code to trust."""
    torch.manual_seed(seed)
    net = build_torch_model(spec)
    mean, scale = _standardise(X)
    Xs = torch.tensor((X - mean) / scale, dtype=torch.float32)
    kinds = _task_kinds(spec)
    ys, y_stats = [], []
    for (_task, y), kind in zip(targets, kinds, strict=True):
        if kind == "classification":
            ys.append(torch.tensor(y, dtype=torch.long))
            y_stats.append((0.0, 1.0))
        else:
            mu, sd = float(y.mean()), float(y.std() or 1.0)
            ys.append(torch.tensor((y - mu) / sd, dtype=torch.float32))
            y_stats.append((mu, sd))
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    net.train()
    for _ in range(epochs):
        optimiser.zero_grad()
        out = net(Xs)
        outs = [out[t] for t, _ in targets] if isinstance(out, dict) else [out]
        loss = sum(
            torch.nn.functional.cross_entropy(o, yt)
            if k == "classification"
            else torch.nn.functional.mse_loss(o[:, 0], yt)
            for o, yt, k in zip(outs, ys, kinds, strict=True)
        )
        loss.backward()  # type: ignore[union-attr]
        optimiser.step()
    net.eval()
    _fold_scaling(net, mean, scale, [t for t, _ in targets], kinds, y_stats)
    return net


def _task_kinds(spec: dict[str, Any]) -> list[str]:
    if spec["arch"] == "mlp":
        return [spec["task"]]
    return [t["type"] for t in spec["tasks"]]


@torch.no_grad()
def _fold_scaling(
    net: torch.nn.Module,
    mean: np.ndarray,
    scale: np.ndarray,
    tasks: list[str],
    kinds: list[str],
    y_stats: list[tuple[float, float]],
) -> None:
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    first = linears[0]
    m = torch.tensor(mean, dtype=torch.float32)
    s = torch.tensor(scale, dtype=torch.float32)
    first.weight.div_(s)
    first.bias.sub_(first.weight @ m)
    heads: list[torch.nn.Linear]
    if hasattr(net, "heads"):
        heads = [net.heads[t] for t in tasks]  # type: ignore[index, misc]
    else:
        heads = [linears[-1]]
    for head, kind, (mu, sd) in zip(heads, kinds, y_stats, strict=True):
        if kind == "regression":
            head.weight.mul_(sd)
            head.bias.mul_(sd).add_(mu)


def _task_dicts(ds: Dataset) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "type": t.kind,
            "n_outputs": len(t.classes) if t.classes else 1,
            "classes": list(t.classes) if t.classes else None,
        }
        for t in ds.tasks
    ]


def _fit_multitask(
    ds: Dataset, seed: int, bar: Any
) -> dict[str, tuple[torch.nn.Module, dict[str, Any]]]:
    """The multi-task networks fitted on the train split: name -> (module, spec)."""
    tasks = _task_dicts(ds)
    targets = ds.targets()
    tr = ds.splits["train"]
    nets = {}
    for i, (name, trunk) in enumerate(MULTITASK_MODELS.items()):
        bar.set_postfix_str(name)
        spec = {
            "arch": "multitask_mlp",
            "n_inputs": ds.X.shape[1],
            "trunk": trunk,
            "tasks": [{k: v for k, v in t.items() if k != "classes"} for t in tasks],
        }
        y_cols = [
            (
                t["name"],
                targets[tr, j].astype(np.int64)
                if t["type"] == "classification"
                else targets[tr, j],
            )
            for j, t in enumerate(tasks)
        ]
        try:
            nets[name] = (fit_torch(spec, ds.X[tr], y_cols, seed + i), spec)
        except Exception as exc:  # reported as this model's, like the base models
            raise ModelTrainError(name, str(exc) or type(exc).__name__) from exc
        bar.update()
    return nets


def _publish_multitask(
    ds: Dataset,
    store: ModelStore,
    nets: dict[str, tuple[torch.nn.Module, dict[str, Any]]],
    seed: int,
    report: TrainReport,
) -> None:
    tasks = _task_dicts(ds)
    targets = ds.targets()
    ho, te = ds.splits["heldout"], ds.splits["test"]
    versions = {}
    for name, (net, spec) in nets.items():
        try:
            versions[name] = store.publish(
                name,
                net,
                framework="torch",
                input_schema={"n_features": ds.X.shape[1], "feature_names": None},
                task="multitask",
                tasks=tasks,
                output_kind="mixed",
                spec=spec,
            )
        except ModelStoreError as exc:
            raise ModelTrainError(name, str(exc)) from exc
    loaded = store.load_bounded([(n, v, None) for n, v in versions.items()])
    P_ho = np.stack([m.predict_outputs(ds.X[ho]) for m in loaded])
    P_te = np.stack([m.predict_outputs(ds.X[te]) for m in loaded])
    y_ho, y_te = targets[ho], targets[te]
    store.publish_dataset(HELDOUT_DATASET + "_multitask", {"X": ds.X[ho], "y": y_ho})
    fusion = combiners.get_combiner(
        "multitask",
        tasks=[{k: v for k, v in t.items() if k != "classes"} for t in tasks],
        random_state=seed,
    ).fit(P_ho, y_ho)
    combined = fusion.combine(P_te)
    for scope, name, P in [
        *(("model", n, p) for n, p in zip(versions, P_te, strict=True)),
        ("strategy", "multitask", combined),
    ]:
        start = 0
        for j, t in enumerate(tasks):
            block = P[:, start : start + t["n_outputs"]]
            start += t["n_outputs"]
            scores = score(t["type"], block, y_te[:, j])
            report.rows.append((scope, f"{name}[{t['name']}]", scores))
    meta, arrays = combiners.save_state(fusion)
    store.publish_strategy("multitask", meta, arrays, versions)
