""":class:`BatchHistogram`: a label-less histogram fed a whole batch's values at a time (one
``searchsorted`` instead of one ``observe`` call per event), with trace exemplars (issue 24).
:class:`worker.metrics.Metrics` registers one for the end-to-end latency."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

__all__ = ["BatchHistogram"]


class BatchHistogram(Collector):
    """A label-less histogram fed whole arrays at a time."""

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # last: above every bound
        self._sum = 0.0
        self._exemplars: dict[int, Exemplar] = {}  # bucket index: its latest exemplar
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray, exemplar: dict[str, str] | None = None) -> None:
        """Bin ``values``; with ``exemplar`` (a trace's labels), each bucket they reach keeps it
        with one of its values (the OpenMetrics exposition shows them; the text format not)."""
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        # side="left": a value equal to a bound falls in that bucket (le is inclusive).
        index = np.searchsorted(self.bounds, values, side="left")
        counts = np.bincount(index, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())
            if exemplar is not None:
                now = time.time()
                buckets, first = np.unique(index, return_index=True)
                for b, i in zip(buckets.tolist(), first.tolist(), strict=True):
                    self._exemplars[b] = Exemplar(exemplar, float(values[i]), now)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
            exemplars = dict(self._exemplars)
        family = HistogramMetricFamily(self.name, self.documentation)
        bounds = [_le(b) for b in self.bounds] + ["+Inf"]
        buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
        for i, (bound, count) in enumerate(zip(bounds, cumulative, strict=True)):
            held = exemplars.get(i)
            buckets.append((bound, float(count)) if held is None else (bound, count, held))
        family.add_metric([], buckets, total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)


def _le(bound: float) -> str:
    return repr(float(bound))
