"""The streamfuse worker: config, Kafka source and sink, the batch pipeline, metrics and the CLI.

``worker`` composes :mod:`combiners` and :mod:`model_store`; neither imports it back.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
