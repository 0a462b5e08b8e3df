"""ONNX models, run by onnxruntime, checked before a session is built.

Any ``.onnx`` file (protobuf: parsing it runs no code) is accepted when:

- no tensor anywhere (initializers, constants, subgraphs) uses external data: those name files
  that onnxruntime would open relative to the working directory;
- every node is in the default domains (``ai.onnx``, ``ai.onnx.ml``) or a function the model
  defines itself: no custom operator library is ever loaded;
- ``onnx.checker.check_model`` passes, and there is one input, a float or double tensor of
  rank 2 whose width (when fixed) is the manifest's;
- every ``TreeEnsembleClassifier`` / ``TreeEnsembleRegressor`` (``ai.onnx.ml`` 1 to 3) is a
  forest of real trees: attribute lists of equal length, unique ``(tree, node)`` ids, branch
  features in ``[0, width)`` with finite thresholds, children in the same tree, no node with
  two parents and each tree's first node its only root (``_tree_links.check_links``), leaf
  weights on existing leaves, class or target ids in range. The opset-5 ``TreeEnsemble``
  is refused (not checked yet).

The session gets the CPU provider only, ``intra_op_num_threads`` = ``runtime.model_threads``
and one inter-op thread. Classification reads the first rank-2 float output (skl2onnx's
``probabilities``; with ``zipmap`` left on, the sequence of maps, slower) and regression the
first float output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._tree_links import LinksRefused, check_links
from .errors import MissingDependencyError

__all__ = ["ONNX_FILE", "OnnxInfo", "check_onnx", "load_onnx_session", "make_onnx_predictor"]

ONNX_FILE = "model.onnx"
_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
_FLOAT, _DOUBLE = 1, 11
_LEAF = "LEAF"
_BRANCHES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")


class OnnxRefused(ValueError):
    """The model fails a check; ``str()`` says which."""


@dataclass(frozen=True)
class OnnxInfo:
    input_name: str
    input_dtype: Any
    output_name: str
    output_is_map: bool
    class_labels: list[Any] | None
    task: str


def import_onnx(name: str | None = None) -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnx", "onnx and onnxruntime", "onnx", name) from exc
    return onnx, onnxruntime


def _graphs(graph: Any, depth: int = 0) -> Iterator[Any]:
    if depth > 32:
        raise OnnxRefused("subgraphs nested deeper than 32 levels")
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g, depth + 1)
            for g in attr.graphs:
                yield from _graphs(g, depth + 1)


def _tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _check_ensemble(node: Any, width: int, where: str) -> None:
    a = _attrs(node)
    prefix = "class" if node.op_type == "TreeEnsembleClassifier" else "target"
    keys = (
        "nodes_treeids",
        "nodes_nodeids",
        "nodes_featureids",
        "nodes_modes",
        "nodes_truenodeids",
        "nodes_falsenodeids",
    )
    if "nodes_values" not in a:
        raise OnnxRefused(f"{where}: nodes_values missing (nodes_values_as_tensor not supported)")
    n = len(a.get("nodes_nodeids", []))
    if any(len(a.get(k, [])) != n for k in (*keys, "nodes_values")) or n == 0:
        raise OnnxRefused(f"{where}: the nodes_* lists differ in length")
    tree, nid = np.asarray(a["nodes_treeids"]), np.asarray(a["nodes_nodeids"])
    modes = [m.decode() if isinstance(m, bytes) else m for m in a["nodes_modes"]]
    if any(m not in (_LEAF, *_BRANCHES) for m in modes):
        raise OnnxRefused(f"{where}: unknown node mode")
    is_split = np.asarray([m != _LEAF for m in modes])
    index = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(tree, nid, strict=True))}
    if len(index) != n:
        raise OnnxRefused(f"{where}: (tree, node) ids repeat")

    def resolve(children: list[int]) -> np.ndarray:
        out = np.full(n, -1, np.int64)
        for k in np.flatnonzero(is_split):
            out[k] = index.get((int(tree[k]), int(children[k])), -1)
        return out

    left, right = resolve(a["nodes_truenodeids"]), resolve(a["nodes_falsenodeids"])
    feats = np.asarray(a["nodes_featureids"])[is_split]
    if ((feats < 0) | (feats >= width)).any():
        raise OnnxRefused(f"{where}: a branch feature is outside [0, {width})")
    if not np.isfinite(np.asarray(a["nodes_values"], np.float64)[is_split]).all():
        raise OnnxRefused(f"{where}: a branch threshold is not finite")
    try:
        check_links(left, right, is_split, where)
    except LinksRefused as exc:
        raise OnnxRefused(str(exc)) from exc
    has_parent = np.zeros(n, bool)
    has_parent[np.r_[left[is_split], right[is_split]]] = True
    first: dict[int, int] = {}
    for k, t in enumerate(tree.tolist()):
        first.setdefault(t, k)
    roots = np.flatnonzero(~has_parent)
    if sorted(roots.tolist()) != sorted(first.values()):
        raise OnnxRefused(f"{where}: each tree's first node must be its only root")
    leaf_tree, leaf_node = a.get(f"{prefix}_treeids", []), a.get(f"{prefix}_nodeids", [])
    ids, weights = a.get(f"{prefix}_ids", []), a.get(f"{prefix}_weights", [])
    if not len(leaf_tree) == len(leaf_node) == len(ids) == len(weights):
        raise OnnxRefused(f"{where}: the {prefix}_* lists differ in length")
    for t, i in zip(leaf_tree, leaf_node, strict=True):
        leaf = index.get((int(t), int(i)))
        if leaf is None or is_split[leaf]:
            raise OnnxRefused(f"{where}: a {prefix} weight is on no leaf")
    if prefix == "class":
        n_out = len(a.get("classlabels_int64s", []) or a.get("classlabels_strings", []))
    else:
        n_out = int(a.get("n_targets", 1))
    if ids and (min(ids) < 0 or max(ids) >= max(n_out, 1)):
        raise OnnxRefused(f"{where}: a {prefix} id is outside [0, {n_out})")
    if not np.isfinite(np.asarray(weights, np.float64)).all():
        raise OnnxRefused(f"{where}: a {prefix} weight is not finite")


def check_onnx(
    data: bytes, *, n_features: int | None, task: str | None
) -> tuple[Any, OnnxInfo, int]:
    """Parse and check an ONNX model; returns it, what to run, and its input width.

    Without a ``task``, a model with several outputs (label and probabilities, as skl2onnx
    writes classifiers) is taken for a classifier, one with a single output for a regressor.
    """
    onnx, _ = import_onnx()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise OnnxRefused(f"not an ONNX protobuf ({type(exc).__name__})") from exc
    functions = {(f.domain, f.name) for f in model.functions}
    graphs = list(_graphs(model.graph))
    for f in model.functions:
        for node in f.node:
            if node.domain not in _DOMAINS and (node.domain, node.op_type) not in functions:
                raise OnnxRefused(f"function {f.name!r} uses operator domain {node.domain!r}")
    for graph in graphs:
        for tensor in _tensors(graph):
            if tensor.data_location == 1 or len(tensor.external_data):
                raise OnnxRefused(f"tensor {tensor.name!r} uses external data (refused)")
        for node in graph.node:
            if node.domain not in _DOMAINS and (node.domain, node.op_type) not in functions:
                raise OnnxRefused(f"operator {node.op_type!r} of domain {node.domain!r} (custom)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise OnnxRefused(f"onnx.checker: {str(exc)[:200]}") from exc
    if len(model.graph.input) != 1:
        raise OnnxRefused(f"{len(model.graph.input)} inputs; one feature matrix is supported")
    tin = model.graph.input[0].type.tensor_type
    dims = tin.shape.dim
    if tin.elem_type not in (_FLOAT, _DOUBLE) or len(dims) != 2:
        raise OnnxRefused("the input must be a float or double tensor of rank 2")
    width = dims[1].dim_value if dims[1].HasField("dim_value") else 0
    if width and n_features is not None and width != n_features:
        raise OnnxRefused(f"the input takes {width} features, but {n_features} were declared")
    width = width or n_features or 0
    if width < 1:
        raise OnnxRefused("the input width is not fixed: declare it (--features N)")
    labels: list[Any] | None = None
    for graph in graphs:
        for i, node in enumerate(graph.node):
            if node.domain in ("ai.onnx.ml",) and node.op_type == "TreeEnsemble":
                raise OnnxRefused("TreeEnsemble (ai.onnx.ml opset 5) is not supported yet")
            if node.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
                _check_ensemble(node, width, f"node {i} ({node.op_type})")
                a = _attrs(node)
                found = a.get("classlabels_int64s") or a.get("classlabels_strings")
                if found and labels is None:
                    labels = [c.decode() if isinstance(c, bytes) else int(c) for c in found]
    if task is None:
        task = "classification" if len(model.graph.output) > 1 else "regression"
    output = _pick_output(model.graph.output, task)
    is_map = output.type.WhichOneof("value") == "sequence_type"
    dtype = np.float32 if tin.elem_type == _FLOAT else np.float64
    info = OnnxInfo(model.graph.input[0].name, dtype, output.name, is_map, labels, task)
    return model, info, width


def _pick_output(outputs: Any, task: str) -> Any:
    tensors = [
        o
        for o in outputs
        if o.type.WhichOneof("value") == "tensor_type"
        and o.type.tensor_type.elem_type in (_FLOAT, _DOUBLE)
    ]
    if task == "classification":
        for o in tensors:
            if len(o.type.tensor_type.shape.dim) == 2:
                return o
        for o in outputs:
            if o.type.WhichOneof("value") == "sequence_type":
                return o
        raise OnnxRefused("no probability output (a rank-2 float tensor or a ZipMap)")
    if not tensors:
        raise OnnxRefused("no float output for the regression values")
    return tensors[0]


def load_onnx_session(data: bytes, *, threads: int, name: str) -> Any:
    """An ``InferenceSession`` on the CPU with capped threads (after :func:`check_onnx`)."""
    _, ort = import_onnx(name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(threads, 0)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def make_onnx_predictor(
    session: Any, info: OnnxInfo, classes: list[Any] | None
) -> Callable[[np.ndarray], np.ndarray]:
    """``X (n, n_features) -> (n, n_outputs) float64``; a ZipMap's maps are read in
    ``classes`` order."""

    def predict(X: np.ndarray) -> np.ndarray:
        x: np.ndarray = np.ascontiguousarray(X, dtype=info.input_dtype)
        (out,) = session.run([info.output_name], {info.input_name: x})
        if info.output_is_map:
            keys = classes if classes is not None else sorted(out[0]) if out else []
            out = [[row[k] for k in keys] for row in out]
        return np.asarray(out, dtype=np.float64).reshape(X.shape[0], -1)

    return predict
