"""The streamfuse worker: config, Kafka source and sink, the batch pipeline, metrics and the CLI.

``worker`` composes :mod:`combiners` and :mod:`model_store`; neither imports it back.
"""

from __future__ import annotations

__all__ = ["__version__"]

# The one place the version is written: the wheel's metadata reads it (pyproject.toml,
# tool.setuptools.dynamic), and so does `streamfuse --version`.
__version__ = "0.1.0"
