"""Drift of the live stream against the reference, a whole batch at a time.

:class:`DriftMonitor` keeps the last ``drift.window`` events of a rolling window as small
integer codes per event (each feature's bin, whether it is out of the reference's range, each
scope's predicted class or output bin) and each classifier scope's calibrated confidence, in
ring buffers; :meth:`DriftMonitor.update` counts the window with one ``bincount`` and exports
(the worker adds every published batch and calls :meth:`DriftMonitor.update_if_due`, at most
one update per ``drift.interval_s``):

- ``streamfuse_feature_drift{feature, statistic}``: PSI and the binned KS statistic
  (:mod:`.stats`) of the first ``drift.max_features`` features;
- ``streamfuse_out_of_range_ratio{feature}``: the window's share outside the reference range;
- ``streamfuse_prediction_drift{scope, name}``: PSI of each model's and strategy's outputs;
- ``streamfuse_estimated_metric{scope, name, metric="accuracy"}``: the mean calibrated
  confidence (:mod:`.profile`), the accuracy expected before any label comes.

Every gauge reads NaN until the window holds ``drift.min_events`` events.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Gauge

from worker.drift.profile import CALIBRATION_GRID, FeatureReference, OutputReference
from worker.drift.stats import bin_index, binned_ks, psi, shares
from worker.metrics import Metrics

__all__ = ["DriftMonitor", "DriftValues"]


@dataclass(frozen=True)
class DriftValues:
    """What the window shows (NaN before ``min_events``): per feature ``psi``, ``ks``,
    ``out_of_range`` (n_features,); per scope ``prediction_psi`` (n_scopes,) and
    ``estimated_accuracy`` (n_scopes; NaN for a scope without calibration)."""

    n_events: int
    psi: np.ndarray
    ks: np.ndarray
    out_of_range: np.ndarray
    prediction_psi: np.ndarray
    estimated_accuracy: np.ndarray


class DriftMonitor:
    """The rolling window of one worker.

    ``outputs`` name the scopes watched: each entry's scope ``model`` reads row
    ``model_names.index(name)`` of ``P``, scope ``strategy`` reads ``outputs[name]``.
    """

    def __init__(
        self,
        features: FeatureReference,
        feature_labels: Sequence[str],
        outputs: Sequence[OutputReference],
        model_names: Sequence[str],
        window: int,
        min_events: int,
        metrics: Metrics | None = None,
        interval_s: float = 0.0,
    ) -> None:
        n = len(feature_labels)
        self.feature_labels = list(feature_labels)
        self.edges = features.edges[:n]
        self.ref_shares = features.shares[:n]
        self.low, self.high = features.low[:n], features.high[:n]
        self.outputs = list(outputs)
        kinds = {o.kind for o in self.outputs}
        if len(kinds) > 1:
            raise ValueError(f"outputs of one kind expected, got {sorted(kinds)}")
        self.kind = kinds.pop() if kinds else "classification"
        n_grid = len(CALIBRATION_GRID)
        self.calibrated = np.array([o.calibration is not None for o in self.outputs], dtype=bool)
        self.calibration = np.stack(
            [o.calibration if o.calibration is not None else np.zeros(n_grid) for o in outputs]
            or [np.zeros(n_grid)]
        )
        self.output_shares = np.stack([o.shares for o in outputs] or [np.zeros(0)])
        self.output_edges = np.stack(
            [o.edges for o in outputs if o.edges is not None] or [np.zeros(0)]
        )
        self.model_index = {name: i for i, name in enumerate(model_names)}
        self.window, self.min_events = window, min_events
        n_bins = self.ref_shares.shape[1]
        # Code layout per event: n feature bins, n range flags, one code per scope.
        widths = [n_bins] * n + [2] * n + [len(o.shares) for o in self.outputs]
        self.offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
        self.n_codes = int(sum(widths))
        self.void = self.n_codes  # the bucket of empty slots and unavailable scopes
        self.codes = np.full((window, len(widths)), self.void, dtype=np.int64)
        self.confidence = np.zeros((window, len(self.outputs)))
        self.has_confidence = np.zeros((window, len(self.outputs)), dtype=bool)
        self.pos = 0
        self.n_seen = 0
        self.metrics = metrics
        self.interval_s = interval_s
        self._updated_at = float("-inf")  # time.monotonic() of the last update
        self._pending = 0  # events added since
        self._children = self._gauges() if metrics is not None else None
        self.initialise()

    @property
    def n_features(self) -> int:
        return len(self.feature_labels)

    # -- per batch -------------------------------------------------------------------------

    def observe(
        self,
        X: np.ndarray,
        P: np.ndarray | None,
        available: np.ndarray | None,
        outputs: Mapping[str, np.ndarray],
    ) -> DriftValues | None:
        """Add a published batch (:meth:`add`), then count the window and export its values
        (:meth:`update`). Returns them (None for an empty batch)."""
        if not self.add(X, P, available, outputs):
            return None
        return self.update()

    def add(
        self,
        X: np.ndarray,
        P: np.ndarray | None,
        available: np.ndarray | None,
        outputs: Mapping[str, np.ndarray],
    ) -> int:
        """Put a published batch into the window: ``X`` (n, n_features) as the models saw it,
        ``P`` (n_models, n, n_outputs), ``available`` (n_models,), ``outputs`` strategy name to
        (n, n_outputs). Returns how many events it added; the gauges move at :meth:`update`."""
        k = len(X)
        if k == 0:
            return 0
        F = self.n_features
        codes = np.full((k, self.codes.shape[1]), self.void, dtype=np.int64)
        confidence = np.zeros((k, len(self.outputs)))
        has_confidence = np.zeros((k, len(self.outputs)), dtype=bool)
        Xf = X[:, :F]
        codes[:, :F] = bin_index(Xf, self.edges) + self.offsets[:F]
        outside = (Xf < self.low) | (Xf > self.high)
        codes[:, F : 2 * F] = outside + self.offsets[F : 2 * F]
        present = [
            (s, out)
            for s, ref in enumerate(self.outputs)
            if (out := self._scope_output(ref, P, available, outputs)) is not None
        ]
        if present:
            s_idx = np.array([s for s, _ in present])
            stacked = np.stack([out for _, out in present])  # (n_present, n, n_outputs)
            column = 2 * F + s_idx
            if self.kind == "classification":
                codes[:, column] = stacked.argmax(axis=2).T + self.offsets[column]
                confidence[:, s_idx] = self._calibrated(stacked.max(axis=2), s_idx).T
                has_confidence[:, s_idx] = self.calibrated[s_idx]
            else:
                value = stacked[:, :, 0].T  # (n, n_present)
                codes[:, column] = bin_index(value, self.output_edges[s_idx]) + self.offsets[column]
        self._push(codes, confidence, has_confidence)
        self._pending += k
        return k

    def update_if_due(self) -> DriftValues | None:
        """:meth:`update` when events were added and ``interval_s`` has passed since the last
        one (the worker calls it after each batch and between batches, so the last events of
        a stream that stops are counted too); None when not due."""
        if not self._pending or time.monotonic() - self._updated_at < self.interval_s:
            return None
        return self.update()

    def update(self) -> DriftValues:
        """Count the window, export its values to the gauges and return them."""
        self._updated_at, self._pending = time.monotonic(), 0
        values = self.values()
        self._export(values)
        return values

    def _calibrated(self, confidence: np.ndarray, s_idx: np.ndarray) -> np.ndarray:
        """Each scope's calibration curve at ``confidence`` (n_scopes, n): linear between
        the points of the uniform :data:`CALIBRATION_GRID`, as ``np.interp`` is."""
        n_steps = len(CALIBRATION_GRID) - 1
        position = np.clip(confidence, 0.0, 1.0) * n_steps
        low = np.minimum(position.astype(np.int64), n_steps - 1)
        frac = position - low
        curves = self.calibration[s_idx]
        rows = np.arange(len(s_idx))[:, None]
        estimated: np.ndarray = curves[rows, low] * (1 - frac) + curves[rows, low + 1] * frac
        return estimated

    def _scope_output(
        self,
        ref: OutputReference,
        P: np.ndarray | None,
        available: np.ndarray | None,
        outputs: Mapping[str, np.ndarray],
    ) -> np.ndarray | None:
        if ref.scope == "strategy":
            return outputs.get(ref.name)
        m = self.model_index.get(ref.name)
        if P is None or m is None or (available is not None and not available[m]):
            return None
        model_output: np.ndarray = P[m]
        return model_output

    def _push(self, codes: np.ndarray, confidence: np.ndarray, has: np.ndarray) -> None:
        k = min(len(codes), self.window)
        idx = (self.pos + np.arange(k)) % self.window
        self.codes[idx] = codes[-k:]
        self.confidence[idx] = confidence[-k:]
        self.has_confidence[idx] = has[-k:]
        self.pos = (self.pos + k) % self.window
        self.n_seen += len(codes)

    # -- the window's statistics -------------------------------------------------------------

    def values(self) -> DriftValues:
        n = min(self.n_seen, self.window)
        F, S = self.n_features, len(self.outputs)
        if n < self.min_events:
            nan_f, nan_s = np.full(F, np.nan), np.full(S, np.nan)
            return DriftValues(n, nan_f, nan_f.copy(), nan_f.copy(), nan_s, nan_s.copy())
        counts = np.bincount(self.codes.ravel(), minlength=self.n_codes + 1)
        n_bins = self.ref_shares.shape[1]
        bins = counts[: F * n_bins].reshape(F, n_bins)
        live = shares(bins)
        flags = counts[F * n_bins : F * n_bins + 2 * F].reshape(F, 2)
        prediction_psi = np.full(S, np.nan)
        if S:  # every scope has as many bins (the classes, or n_bins): one block
            start = self.offsets[2 * F]
            scoped = counts[start : start + self.output_shares.size].reshape(S, -1)
            seen = scoped.sum(axis=1) > 0
            prediction_psi[seen] = psi(shares(scoped[seen]), self.output_shares[seen])
        n_conf = self.has_confidence.sum(axis=0)
        summed = (self.confidence * self.has_confidence).sum(axis=0)
        estimated = np.full(S, np.nan)
        np.divide(summed, n_conf, out=estimated, where=n_conf > 0)
        return DriftValues(
            n,
            psi(live, self.ref_shares),
            binned_ks(live, self.ref_shares),
            flags[:, 1] / n,
            prediction_psi,
            estimated,
        )

    # -- gauges ----------------------------------------------------------------------------

    def _gauges(self) -> dict[str, list[Gauge]]:
        m = self.metrics
        assert m is not None
        return {
            "psi": [m.feature_drift.labels(f, "psi") for f in self.feature_labels],
            "ks": [m.feature_drift.labels(f, "ks") for f in self.feature_labels],
            "out_of_range": [m.out_of_range_ratio.labels(f) for f in self.feature_labels],
            "prediction_psi": [m.prediction_drift.labels(o.scope, o.name) for o in self.outputs],
            "estimated_accuracy": [
                m.estimated_metric.labels(o.scope, o.name, "accuracy")
                for o in self.outputs
                if o.calibration is not None
            ],
        }

    def initialise(self) -> None:
        """Export every series at NaN (nothing observed yet)."""
        self._export(self.values())

    def _export(self, values: DriftValues) -> None:
        if self._children is None:
            return
        calibrated = [s for s, o in enumerate(self.outputs) if o.calibration is not None]
        pairs = {
            "psi": values.psi,
            "ks": values.ks,
            "out_of_range": values.out_of_range,
            "prediction_psi": values.prediction_psi,
            "estimated_accuracy": values.estimated_accuracy[calibrated],
        }
        for key, array in pairs.items():
            for child, value in zip(self._children[key], array.tolist(), strict=True):
                child.set(value)
