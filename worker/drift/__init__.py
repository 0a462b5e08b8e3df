"""Drift and estimated accuracy: the live stream against the store's reference profile.

:mod:`.stats` (PSI and the binned KS statistic over quantile bins), :mod:`.profile` (what the
reference holds, built at fit time and read back from the store), :mod:`.monitor` (the rolling
window of the worker, a whole batch at a time, and its gauges). No Kafka and no store here;
may import :mod:`worker.config` and :mod:`worker.metrics`.
"""

from __future__ import annotations

from worker.drift.monitor import DriftMonitor, DriftValues
from worker.drift.profile import (
    PROFILE_NAME,
    FeatureReference,
    OutputReference,
    ProfileError,
    feature_reference,
    output_references,
    profile_arrays,
    read_profile,
    sample_rows,
)
from worker.drift.stats import binned_ks, psi

__all__ = [
    "PROFILE_NAME",
    "DriftMonitor",
    "DriftValues",
    "FeatureReference",
    "OutputReference",
    "ProfileError",
    "binned_ks",
    "feature_reference",
    "output_references",
    "profile_arrays",
    "psi",
    "read_profile",
    "sample_rows",
]
