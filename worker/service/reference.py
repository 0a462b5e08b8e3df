"""The drift monitor of what is served: the store's reference profile, matched to the served
versions.

The features' reference is the profile's as stored. The outputs' reference (each model's and
strategy's held-out distribution and confidence calibration) is the stored one when the
profile was made with exactly the served model versions and holds every served scope; else
(a hot reload, a model published after the profile, another strategy set) it is made again
from the store's held-out set with the served versions, as the held-out scores are.
Multi-task model sets get the features' part only.

:func:`reference_rows` draws synthetic rows from the features' reference, for warming a new
version when neither a live batch nor a held-out set is at hand.
"""

from __future__ import annotations

import logging

import numpy as np

from model_store import ModelNotFoundError, ModelStore, ModelStoreError, StoredProfile
from worker.config import DriftSettings
from worker.drift import (
    PROFILE_NAME,
    DriftMonitor,
    ProfileError,
    output_references,
    read_profile,
    sample_rows,
)
from worker.drift.profile import OutputReference
from worker.inference.serving import Serving
from worker.inference.strategies import heldout_outputs
from worker.metrics import Metrics

__all__ = ["open_drift", "reference_rows"]

log = logging.getLogger("streamfuse.worker")


def open_drift(
    store: ModelStore, serving: Serving, settings: DriftSettings, metrics: Metrics | None
) -> DriftMonitor | None:
    """A monitor for ``serving``, or None (drift off, no profile, or a profile refused:
    serving goes on without drift either way, with the reason logged)."""
    if not settings.enabled:
        return None
    try:
        stored = store.load_profile(PROFILE_NAME)
    except ModelNotFoundError:
        log.info("no reference profile in the store: drift off (streamfuse train or fit make one)")
        return None
    except ModelStoreError as exc:
        _refused(metrics, f"the store refused the reference profile: {exc}")
        return None
    try:
        return _monitor(store, stored, serving, settings, metrics)
    except Exception as exc:  # the store's refusal, whatever a malformed profile trips over
        reason = exc if isinstance(exc, ProfileError) else f"{type(exc).__name__}: {exc}"
        _refused(
            metrics,
            f"the reference profile version {stored.version} (meta.json, arrays.npz) is "
            f"malformed: {reason}",
        )
        return None


def reference_rows(store: ModelStore, n_features: int, n: int) -> np.ndarray | None:
    """``n`` rows drawn from the store's reference profile of the features
    (:func:`worker.drift.sample_rows`), or None when the store has no usable profile."""
    try:
        stored = store.load_profile(PROFILE_NAME)
        features, _ = read_profile(stored.meta, stored.arrays, n_features)
    except Exception:  # no profile, or one refused: open_drift says why, when drift is on
        return None
    return sample_rows(features, n)


def _refused(metrics: Metrics | None, why: str) -> None:
    log.warning("drift off: %s", why)
    if metrics is not None:
        metrics.drift_profiles_refused.inc()


def _monitor(
    store: ModelStore,
    stored: StoredProfile,
    serving: Serving,
    settings: DriftSettings,
    metrics: Metrics | None,
) -> DriftMonitor:
    schema = serving.schema
    features, outputs = read_profile(stored.meta, stored.arrays, schema.n_features)
    block = serving.layout.blocks[0]
    for o in [] if serving.layout.is_multitask else outputs:
        n_bins = o.shares.size
        if o.kind != block.kind or (o.kind == "classification" and n_bins != block.n_outputs):
            raise ProfileError(
                f"{o.scope} {o.name}: {o.kind} over {n_bins} bins, serving "
                f"{block.kind} with {block.n_outputs} outputs"
            )
    served = [("model", n) for n in serving.names] + [
        ("strategy", s.name) for s in serving.strategies
    ]
    how = "as stored"
    if serving.layout.is_multitask:
        outputs, how = [], "none (multi-task)"
    elif stored.fitted_on != serving.versions or not {(o.scope, o.name) for o in outputs} >= set(
        served
    ):
        outputs = _from_heldout(store, serving)
        how = (
            f"made again from the held-out set (profiled {stored.fitted_on}, "
            f"served {serving.versions})"
        )
    wanted = set(served)
    outputs = [o for o in outputs if (o.scope, o.name) in wanted]
    names = schema.feature_names or tuple(str(j) for j in range(schema.n_features))
    if metrics is not None:  # a new snapshot may watch other series: drop the old ones
        for gauge in (
            metrics.feature_drift,
            metrics.out_of_range_ratio,
            metrics.prediction_drift,
            metrics.estimated_metric,
        ):
            gauge.clear()
    monitor = DriftMonitor(
        features,
        names[: settings.max_features],
        outputs,
        serving.names,
        settings.window,
        settings.min_events,
        metrics,
        settings.interval_s,
    )
    log.info(
        "drift: reference profile version %d, %d features, %d models and strategies watched; "
        "outputs' reference %s",
        stored.version,
        monitor.n_features,
        len(outputs),
        how,
    )
    return monitor


def _from_heldout(store: ModelStore, serving: Serving) -> list[OutputReference]:
    try:
        P, y = heldout_outputs(store, serving.model_set)
        combined = {s.name: s.combiner.combine(P) for s in serving.strategies}
        return output_references(serving.layout.blocks[0].kind, P, serving.names, combined, y)
    except Exception as exc:  # a reference must never stop the worker
        log.warning("no output drift or estimated accuracy: %s", exc)
        return []
