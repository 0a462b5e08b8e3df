"""The worker's configuration: one validated, immutable settings object built at start-up.

A YAML file, validated strictly (unknown keys are errors with a "did you mean"), where any key can
be overridden by an environment variable ``STREAMFUSE_<SECTION>__<KEY>``
(``STREAMFUSE_KAFKA__BOOTSTRAP_SERVERS``; deeper keys add more ``__``). Values from the
environment are parsed as YAML scalars, so ``STREAMFUSE_BATCH__MAX_EVENTS=256`` is a number.
Relative paths resolve against the config file's folder. Every key, with its type, default
and meaning: ``docs/configuration.md``, written from these models.

:mod:`._load` (reading, overriding from the environment, validating), :mod:`._base` (the
strict base model, the key error, secrets), :mod:`._sections` (one model per section),
:mod:`._kafka` (the ``kafka`` section), :mod:`._registry` (``schema_registry`` and ``input``),
:mod:`._tracing` (``tracing``).

The bottom layer of the worker: imports nothing of it but :mod:`worker.errors`, and builds no
client. The names in ``kafka.client``, ``kafka.consumer`` and ``kafka.producer`` are the chosen
library's; the transport checks them when it is opened (:func:`worker.transport.open_transport`).
"""

from __future__ import annotations

from worker.config._load import load_settings, settings_from_dict
from worker.config._sections import (
    ENV_PREFIX,
    BatchSettings,
    DriftSettings,
    InputSettings,
    KafkaSettings,
    LabelsSettings,
    LoggingSettings,
    MetricsSettings,
    ModelErrorPolicy,
    ModelRef,
    OutputSettings,
    PromoteSettings,
    ReloadSettings,
    RuntimeSettings,
    SchemaRegistrySettings,
    Settings,
    StoreSettings,
    StrategyRef,
    TopicsSettings,
    TracingSettings,
    ValidationSettings,
)

__all__ = [
    "ENV_PREFIX",
    "BatchSettings",
    "DriftSettings",
    "InputSettings",
    "KafkaSettings",
    "LabelsSettings",
    "LoggingSettings",
    "MetricsSettings",
    "ModelErrorPolicy",
    "ModelRef",
    "OutputSettings",
    "PromoteSettings",
    "ReloadSettings",
    "RuntimeSettings",
    "SchemaRegistrySettings",
    "Settings",
    "StoreSettings",
    "StrategyRef",
    "TopicsSettings",
    "TracingSettings",
    "ValidationSettings",
    "load_settings",
    "settings_from_dict",
]
