"""Size caps that bound what a hostile store can make the loader read, inflate or build."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["StoreLimits"]

_MiB = 1 << 20


@dataclass(frozen=True)
class StoreLimits:
    """Caps checked before anything is read, inflated or allocated.

    The defaults are far above what the store's own models need (a 100-tree depth-12 forest
    on 64 features is about 60 MB of skops; its schema 1 MB) and far below what would hurt
    a worker. Every field is a positive integer.

    Attributes
    ----------
    max_file_bytes : int, default 1 GiB
        Any file a manifest lists (checked against the manifest's ``size`` and the file's
        own size before a byte is read).
    max_json_bytes : int, default 4 MiB
        ``manifest.json``, ``active.json``, a strategy's or profile's ``meta.json`` and a
        decision's ``decision.json`` (checked against the manifest and ``fstat`` before
        reading, like ``max_file_bytes``).
    max_json_depth : int, default 64
        Nesting of any JSON document the store parses (skops' ``schema.json`` included).
    max_inflated_bytes : int, default 1 GiB
        Sum of the declared uncompressed sizes of a zip's members (skops, npz); Python's
        zipfile never inflates a member beyond its declared size.
    max_zip_members : int, default 100,000
    max_schema_bytes : int, default 64 MiB
        skops' ``schema.json`` (parsed into Python objects, so it costs several times this).
    max_skops_nodes : int, default 500,000
        Nodes (objects to rebuild) in a skops schema.
    max_torch_width : int, default 16,384
        Any layer width (or ``n_inputs``/``n_outputs``) of a torch spec.
    max_torch_params : int, default 100,000,000
        Parameters of a torch model (400 MB of float32).
    max_tasks : int, default 256
        Task heads of a multi-task torch model.
    max_features : int, default 1,000,000
        ``input_schema.n_features`` and class or output counts in a manifest.
    max_trees : int, default 50,000
        Trees in one XGBoost or LightGBM model (the check costs tens of microseconds per
        tree, the library's own parse more).
    max_tree_nodes : int, default 2,000,000
        Nodes (splits and leaves) of all trees of one XGBoost or LightGBM model together; an
        XGBoost JSON file is also refused, before it is parsed, when it holds more objects,
        arrays or numbers than a model of ``max_trees`` trees and this many nodes can.
    max_onnx_elements : int, default 50,000,000
        Elements of any tensor an ONNX graph builds from constant shapes (``ConstantOfShape``,
        ``Expand``, ``Tile``, ``Range``, ``Resize``, ``Reshape``, ...), and of any constant.
    max_onnx_loop_trips : int, default 100,000
        The constant trip count of an ONNX ``Loop`` (a ``Loop`` without one is refused).
    max_load_bytes : int, default 8 GiB
        Address space of the child process that loads a model and predicts a probe batch
        before the worker loads it (``resource.RLIMIT_AS``; importing torch alone maps 3.3
        GB, scikit-learn 0.4 GB): an allocation past it is a refusal.
    max_load_cpu_s : int, default 120
        CPU seconds of that child (``resource.RLIMIT_CPU``).
    max_load_wall_s : int, default 300
        Wall-clock seconds the worker waits for that child before killing it.
    """

    max_file_bytes: int = 1024 * _MiB
    max_json_bytes: int = 4 * _MiB
    max_json_depth: int = 64
    max_inflated_bytes: int = 1024 * _MiB
    max_zip_members: int = 100_000
    max_schema_bytes: int = 64 * _MiB
    max_skops_nodes: int = 500_000
    max_torch_width: int = 16_384
    max_torch_params: int = 100_000_000
    max_tasks: int = 256
    max_features: int = 1_000_000
    max_trees: int = 50_000
    max_tree_nodes: int = 2_000_000
    max_onnx_elements: int = 50_000_000
    max_onnx_loop_trips: int = 100_000
    max_load_bytes: int = 8 * 1024 * _MiB
    max_load_cpu_s: int = 120
    max_load_wall_s: int = 300

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"StoreLimits.{f.name} must be a positive integer, got {value!r}")
