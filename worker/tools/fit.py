"""``streamfuse fit``: every strategy fitted on the user's held-out data, for models that came
from ``streamfuse store publish``; and the strategy fitting and config writing ``train`` shares.

The held-out file goes through the promoted versions exactly as the worker serves them (each
model loaded from the store), the held-out set is published (so ``strategy.fit: heldout``
and hot reloads can refit), each strategy is published with ``fitted_on`` naming those
versions, the drift reference profile is published (the held-out rows are the features'
reference too: the training rows are not known here), and a complete config serving them is
written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import combiners
from model_store import ModelStore, ModelStoreError
from worker.accuracy.scoring import score, score_table
from worker.config import ModelRef, StoreSettings
from worker.drift import (
    PROFILE_NAME,
    FeatureReference,
    ProfileError,
    feature_reference,
    output_references,
    profile_arrays,
    read_profile,
)
from worker.errors import ConfigError
from worker.inference.models import ModelSet
from worker.inference.store import open_store
from worker.inference.strategies import HELDOUT_DATASET
from worker.tools.tabular import class_index, read_labelled

__all__ = [
    "CLASSIFICATION_STRATEGIES",
    "REGRESSION_STRATEGIES",
    "FitError",
    "FitReport",
    "check_classes",
    "fit",
    "fit_strategies",
    "publish_reference",
    "strategies_for",
    "write_config",
]

CLASSIFICATION_STRATEGIES: dict[str, dict[str, Any]] = {
    "soft_vote": {},
    "hard_vote": {},
    "weighted_average": {},
    "weighted_sum": {},
    "stacking": {},
    "select_best": {"k": 2, "window": 1000},
    "hedge": {"eta": 0.5},
}
#: No ``stacking`` for regression: its default meta-learner, ``Ridge(alpha=1)`` over the
#: models' outputs with an intercept, solves the same penalised least squares as
#: ``weighted_sum`` (weights penalised, bias not): the same outputs to 1e-13 on diabetes.
REGRESSION_STRATEGIES: dict[str, dict[str, Any]] = {
    "weighted_average": {},
    "weighted_sum": {},
    "select_best": {"k": 2, "window": 1000},
    "hedge": {"eta": 0.5},
}


def strategies_for(kind: str) -> dict[str, dict[str, Any]]:
    return CLASSIFICATION_STRATEGIES if kind == "classification" else REGRESSION_STRATEGIES


def fit_strategies(
    store: ModelStore,
    kind: str,
    P_fit: np.ndarray,
    y_fit: np.ndarray,
    versions: dict[str, int],
    P_score: np.ndarray,
    y_score: np.ndarray,
    on_step: Callable[[str], None] | None = None,
    fitted: dict[str, Any] | None = None,
) -> list[tuple[str, str, dict[str, float]]]:
    """Fit every strategy of ``kind`` on ``(P_fit, y_fit)``, publish each with ``fitted_on``
    = ``versions``; returns their score rows on ``(P_score, y_score)`` (and puts each fitted
    combiner in ``fitted`` when given)."""
    rows = []
    for name, params in strategies_for(kind).items():
        if on_step is not None:
            on_step(name)
        combiner = combiners.get_combiner(name, task=kind, **params).fit(P_fit, y_fit)
        rows.append(("strategy", name, score(kind, combiner.combine(P_score), y_score)))
        meta, arrays = combiners.save_state(combiner)
        store.publish_strategy(name, meta, arrays, versions)
        if fitted is not None:
            fitted[name] = combiner
    return rows


def publish_reference(
    store: ModelStore,
    kind: str,
    X_reference: np.ndarray,
    P_heldout: np.ndarray,
    names: list[str],
    fitted: dict[str, Any],
    y_heldout: np.ndarray,
    versions: dict[str, int],
    feature_names: list[str] | None,
    features_from: str = "train",
) -> int:
    """Publish the drift reference profile: the features of ``X_reference`` (the rows the
    models learnt from, when known), and every model's and fitted strategy's outputs and
    confidence calibration on the held-out set. A features' reference that ``store publish
    --reference`` stored is kept instead of ``X_reference`` (it came from the training rows)."""
    features, n_feature_rows = kept_reference(store, X_reference.shape[1])
    if features is None:
        features, n_feature_rows = feature_reference(X_reference), len(X_reference)
    else:
        features_from = "reference"
    combined = {name: c.combine(P_heldout) for name, c in fitted.items()}
    outputs = output_references(kind, P_heldout, names, combined, y_heldout)
    n_rows = {"features": n_feature_rows, "outputs": len(y_heldout)}
    meta, arrays = profile_arrays(features, outputs, feature_names, n_rows, features_from)
    return store.publish_profile(PROFILE_NAME, meta, arrays, versions)


def kept_reference(store: ModelStore, n_features: int) -> tuple[FeatureReference | None, int]:
    """The features' reference of the store's profile when it came from a ``store publish
    --reference`` sample of ``n_features`` columns, and its row count."""
    try:
        stored = store.load_profile(PROFILE_NAME)
    except ModelStoreError:
        return None, 0
    if stored.meta.get("features_from") != "reference":
        return None, 0
    try:
        features, _ = read_profile(stored.meta, stored.arrays, n_features)
    except ProfileError:
        return None, 0
    n_rows = stored.meta.get("n_rows")
    n = n_rows.get("features", 0) if isinstance(n_rows, dict) else 0
    return features, n if type(n) is int and n > 0 else 0


def write_config(
    path: Path,
    store_dir: Path,
    names: list[str],
    kind: str,
    bootstrap: str,
    key_file: Path | None = None,
) -> None:
    """A complete config serving ``names`` from ``store_dir`` with every fitted strategy."""
    if kind == "multitask":
        strategy, shadows = "multitask", ["weighted_average"]
    else:
        strategy = "soft_vote" if kind == "classification" else "weighted_average"
        shadows = [s for s in strategies_for(kind) if s != strategy]
    try:
        store_ref = str(store_dir.resolve().relative_to(path.resolve().parent))
    except ValueError:
        store_ref = str(store_dir.resolve())
    config = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "group_id": "streamfuse",
            "processing_guarantee": "at_least_once",
        },
        "topics": {
            "input": "features",
            "output": "predictions",
            "labels": "labels",
            "dead_letter": "features.dlq",
            "create": True,
        },
        "batch": {"max_events": 512, "max_wait_ms": 20},
        "store": store_ref if key_file is None else {"path": store_ref, "key_file": str(key_file)},
        "models": [{"name": n} for n in names],
        "strategy": {"name": strategy},
        "shadow_strategies": [{"name": s} for s in shadows],
        "on_model_error": {"policy": "renormalize", "min_models": 2, "timeout_ms": 1000},
        "metrics": {"host": "127.0.0.1", "port": 9464},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


class FitError(ConfigError):
    """``fit`` cannot use the store's models as they are; the message says what to do."""

    def __init__(self, message: str) -> None:
        self.key = "--store"
        self.problem = message
        Exception.__init__(self, message)


#: Frameworks whose files hold class indices only: text class names come from ``--classes``.
INDEX_ONLY_FRAMEWORKS = ("xgboost", "lightgbm")


def check_classes(store: ModelStore, names: list[str]) -> None:
    """The classifiers among ``names`` have the same classes in the same order; otherwise a
    :class:`FitError` says which models to republish, and with what ``--classes``."""
    known = set(store.models())
    found: dict[str, tuple[list[Any], str]] = {}
    for name in names:
        if name not in known:
            continue  # ModelSet names it
        try:
            manifest = store.manifest(name)
        except ModelStoreError:
            continue  # ModelSet reports it, loading
        if manifest.get("task") == "classification" and manifest.get("classes") is not None:
            found[name] = (list(manifest["classes"]), str(manifest.get("framework")))
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, (classes, _) in found.items():
        groups.setdefault(tuple(str(c) for c in classes), []).append(name)
    if len(groups) < 2:
        return

    def texty(key: tuple[str, ...]) -> bool:
        return not all(c.lstrip("-").isdigit() for c in key)

    # The right classes: text names (a file that holds them) over indices, then the most models.
    right = max(groups, key=lambda k: (texty(k), len(groups[k])))
    wrong = [n for k, members in groups.items() if k != right for n in members]
    has = "; ".join(
        f"{', '.join(map(repr, members))} {'has' if len(members) == 1 else 'have'} "
        f"{found[members[0]][0]}"
        for members in [groups[right], *(m for k, m in groups.items() if k != right)]
    )
    example = wrong[0]
    framework = found[example][1]
    names_arg = ""
    if store.manifest(example)["input_schema"].get("feature_names"):
        names_arg = " --feature-names NAMES.txt"
    why = ""
    if any(found[n][1] in INDEX_ONLY_FRAMEWORKS for n in wrong):
        why = " (XGBoost and LightGBM files cannot hold text class names: give them --classes)"
    raise FitError(
        f"the models' classes differ: {has}. Republish {', '.join(map(repr, wrong))} with the "
        f"classes in their output order, e.g. streamfuse store publish {example} FILE "
        f"--framework {framework}{names_arg} --classes {','.join(right)} --store "
        f"{store.root}{why}"
    )


@dataclass
class FitReport:
    kind: str
    n_rows: int
    rows: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)
    config_path: Path | None = None

    def table(self) -> str:
        return score_table(self.rows)


def fit(
    store_dir: str | Path,
    heldout: str | Path,
    target: str,
    *,
    models: list[str] | None = None,
    config_out: str | Path | None = None,
    bootstrap: str = "127.0.0.1:9092",
    key_file: str | Path | None = None,
) -> FitReport:
    """Fit and publish every strategy on ``heldout`` for the promoted ``models`` (default:
    every model in the store), and write a config serving them."""
    store_dir = Path(store_dir)
    key_path = Path(key_file).resolve() if key_file is not None else None
    store = open_store(StoreSettings(path=store_dir, key_file=key_path))
    names = models or store.models()
    if not names:
        raise ConfigError("--store", f"{store_dir} holds no models (streamfuse store publish)")
    check_classes(store, names)
    try:
        model_set = ModelSet(store, [ModelRef(name=n) for n in names])
    except ConfigError as exc:  # no config exists yet: say what is wrong in the store
        raise FitError(
            f"the models in {store_dir} cannot be served together: {exc.problem}"
        ) from exc
    first = model_set.models[0]
    if first.task == "multitask":
        raise ConfigError("--store", "multi-task models are fitted by streamfuse train only")
    data = read_labelled(
        heldout, target, task=first.task, names=first.feature_names, n_features=first.n_features
    )
    if first.task == "classification":
        assert first.classes is not None
        y = class_index(heldout, first.classes, data.y)
    else:
        y = data.y.astype(np.float64)
    P = np.stack([m.predict_outputs(data.X) for m in model_set.models])
    report = FitReport(first.task, len(y))
    for name, out in zip(names, P, strict=True):
        report.rows.append(("model", name, score(first.task, out, y)))
    store.publish_dataset(HELDOUT_DATASET, {"X": data.X, "y": y})
    fitted: dict[str, Any] = {}
    report.rows += fit_strategies(store, first.task, P, y, model_set.versions, P, y, fitted=fitted)
    publish_reference(
        store, first.task, data.X, P, list(names), fitted, y, model_set.versions,
        first.feature_names, features_from="heldout",
    )  # fmt: skip
    out_path = Path(config_out) if config_out else store_dir.parent / "streamfuse.yaml"
    write_config(out_path, store_dir, list(names), first.task, bootstrap, key_path)
    report.config_path = out_path
    return report
