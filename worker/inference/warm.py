"""Warm a new snapshot before it serves, and check a new version against what it answered at
publish.

torch and ONNX runtimes are slow on their first calls and on each new batch shape: a version
that reaches the worker (hot reload, or a rollout's candidate) is run once at every batch size
the worker uses, on recent events, while the old snapshot still serves. Its outputs on the rows
recorded at publish (:func:`model_store.largest_difference`) must be those recorded then.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from model_store import LoadedModel, ModelStore, largest_difference

if TYPE_CHECKING:  # models.py imports this module, and serving.py imports models.py
    from worker.config import Settings
    from worker.inference.fanout import Fanout
    from worker.inference.serving import Serving
    from worker.metrics import Metrics

__all__ = [
    "PROBE_ROWS",
    "PUBLISHED_TOLERANCE",
    "check_published",
    "first_rows",
    "warm",
    "warm_batches",
    "warm_threads",
]

log = logging.getLogger("streamfuse.worker")

PROBE_ROWS = 64

#: Largest absolute difference from the published outputs still taken as the same answer
#: (float32 runtimes and thread counts move the last digits, never this far).
PUBLISHED_TOLERANCE = 1e-5


def warm(serving: Serving, probe: np.ndarray, settings: Settings, model: str) -> float:
    """Seconds ``serving``'s new version of ``model`` took to predict 1 and ``batch.max_events``
    rows of ``probe`` (repeated to fill), the batch sizes the worker runs. Only that model: the
    others serve already, warm, and running them too (on this thread, beside the serving one)
    only slowed the batches served meanwhile."""
    predict = serving.predict_fns[serving.names.index(model)]
    t0 = time.perf_counter()
    for X in warm_batches(probe, settings):
        predict(X)
    return time.perf_counter() - t0


def warm_batches(probe: np.ndarray, settings: Settings) -> list[np.ndarray]:
    """``probe`` repeated to 1 and ``batch.max_events`` rows: the batch sizes the worker runs."""
    return [np.resize(probe, (n, probe.shape[1])) for n in sorted({1, settings.batch.max_events})]


def warm_threads(
    fanout: Fanout,
    serving: Serving,
    store: ModelStore,
    settings: Settings,
    metrics: Metrics,
    synthetic: np.ndarray | None = None,
) -> None:
    """At start-up: every model run at the batch sizes the worker uses, on its own fan-out
    thread, before the first batch. A cold first call there (threadpoolctl reading every loaded
    library, a runtime's per-thread set-up, torch's first shapes) would otherwise count against
    ``on_model_error.timeout_ms``. A model that fails here is logged; the batches then count its
    failures as they would have."""
    batches = warm_batches(first_rows(store, serving, synthetic), settings)
    took = fanout.warm(serving.predict_fns, batches)
    for name, seconds in zip(serving.names, took, strict=True):
        if isinstance(seconds, Exception):
            log.warning("model %s failed its warm-up: %s", name, seconds)
        else:
            metrics.model_warmup.labels(name).set(seconds)
    log.info(
        "models warmed at %s rows: %s",
        "/".join(str(len(X)) for X in batches),
        ", ".join(
            f"{n} {t:.3f}s" if isinstance(t, float) else f"{n} failed"
            for n, t in zip(serving.names, took, strict=True)
        ),
    )


def first_rows(
    store: ModelStore, serving: Serving, synthetic: np.ndarray | None = None
) -> np.ndarray:
    """Rows to load and warm a new version on before the worker saw a good batch: the store's
    held-out set (real rows), else ``synthetic`` (rows drawn from the reference profile, made
    by the service layer), else zeros (which still check the output shape)."""
    from worker.inference.strategies import heldout_name  # strategies imports models, this

    try:
        data = store.load_dataset(heldout_name(serving.model_set))
        return np.asarray(data.arrays["X"][:PROBE_ROWS], dtype=np.float64)
    except Exception as exc:  # no usable held-out set
        log.debug("no held-out rows to warm on (%s)", exc)
    if synthetic is not None and synthetic.shape[1:] == (serving.schema.n_features,):
        return synthetic
    return np.zeros((8, serving.schema.n_features))


def check_published(model: LoadedModel, tolerance: float = PUBLISHED_TOLERANCE) -> None:
    """Raise ValueError when ``model`` answers otherwise than at publish on the rows recorded
    then (a version recorded without them passes)."""
    difference = largest_difference(model)
    if difference is not None and not difference <= tolerance:
        n = 0 if model.published is None else len(model.published["X"])
        raise ValueError(
            f"it answers differently from what was published: largest difference "
            f"{difference:.3g} > {tolerance:g} on the {n} rows recorded at publish"
        )
