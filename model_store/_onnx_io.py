"""ONNX models, run by onnxruntime, checked before a session is built.

Any ``.onnx`` file (protobuf: parsing it runs no code) is accepted when:

- no tensor anywhere uses external data (initializers, sparse initializers, a ``Constant``'s
  ``value`` and ``sparse_value``, any tensor attribute, in subgraphs of ``If``, ``Loop``,
  ``Scan`` too): those name files that onnxruntime would open relative to the working
  directory; model-local functions are refused outright (the supported exporters do not
  write them);
- every node is in the default domains (``ai.onnx``, ``ai.onnx.ml``; no custom operator
  library is ever loaded) and on the allow-list of operators skl2onnx and
  ``torch.onnx.export`` write (``_OPS``, ``_ML_OPS``);
- nothing is built from constants beyond ``limits.max_onnx_elements`` elements (declared
  tensors; ``ConstantOfShape``, ``Expand``, ``Reshape``, ``Tile``, ``Range``, ``Resize``,
  ``Upsample``, ``Pad``, ``OneHot`` with constant shape inputs), and every ``Loop`` has a
  constant trip count of at most ``limits.max_onnx_loop_trips``; a shape computed from
  constants by other operators (which onnxruntime would fold at load) is refused. Shapes
  computed at run time from the input are not bounded by this check;
- ``onnx.checker.check_model`` passes, and there is one input, a float or double tensor of
  rank 2 whose width (when fixed) is the manifest's;
- every ``TreeEnsembleClassifier`` / ``TreeEnsembleRegressor`` (``ai.onnx.ml`` 1 to 3) is a
  forest of real trees: attribute lists of equal length, unique ``(tree, node)`` ids, branch
  features in ``[0, width)`` with finite thresholds, children in the same tree, no node with
  two parents and each tree's first node its only root (``_tree_links.check_links``), leaf
  weights on existing leaves, class or target ids in range. The opset-5 ``TreeEnsemble``
  is refused (not checked yet).

A classifier's classes are the labels its file states for the probability columns
(:func:`_file_labels`: a ``ZipMap``'s keys or the ``classlabels_*`` of a ``LinearClassifier``,
``SVMClassifier`` or ``TreeEnsembleClassifier`` upstream of the output; else the label
output's ``LabelEncoder`` or ``ArrayFeatureExtractor`` over constant labels; else the
model's ``metadata_props``: ``classes``, ``class_names``, ``class_labels`` or ``labels``, a
JSON list or an object from ``"0".."n-1"``). Classes given at publish must be those
labels; in another order, :func:`make_onnx_predictor` permutes the columns to it.

The session gets the CPU provider only, ``intra_op_num_threads`` = ``runtime.model_threads``
and one inter-op thread. Classification reads the first rank-2 float output (skl2onnx's
``probabilities``; with ``zipmap`` left on, the sequence of maps, slower) and regression the
first float output.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._json import parse_json
from ._limits import StoreLimits
from ._native import NativeCodec, Opened
from ._refused import Refused
from ._tree_links import check_links
from .errors import MissingDependencyError, PublishError, UnsafeModelError

__all__ = [
    "CODEC",
    "ONNX_FILE",
    "OnnxInfo",
    "check_onnx",
    "class_columns",
    "load_onnx_session",
    "make_onnx_predictor",
    "served_classes",
]

log = logging.getLogger("model_store")

ONNX_FILE = "model.onnx"
_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
_FLOAT, _DOUBLE = 1, 11
_LEAF = "LEAF"
_BRANCHES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ")
#: ``ai.onnx.ml`` operators skl2onnx writes (``TreeEnsemble``, opset 5, is refused below).


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


_ML_OPS = _names(
    """ArrayFeatureExtractor Binarizer CastMap CategoryMapper DictVectorizer FeatureVectorizer
    Imputer LabelEncoder LinearClassifier LinearRegressor Normalizer OneHotEncoder
    SVMClassifier SVMRegressor Scaler TreeEnsemble TreeEnsembleClassifier
    TreeEnsembleRegressor ZipMap"""
)
#: ``ai.onnx`` operators skl2onnx and torch.onnx.export write for tabular models and
#: common networks; others (random generators, string and sequence ops, ...) are refused.
_OPS = _names(
    """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool
    BatchNormalization BitShift Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape
    Conv ConvTranspose Cos Cosh CumSum DepthToSpace Det Div Dropout Einsum Elu Equal Erf Exp
    Expand EyeLike Flatten Floor GRU Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual GroupNormalization HardSigmoid
    HardSwish Hardmax Identity If InstanceNormalization IsInf IsNaN LRN LSTM
    LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization
    MatMul Max MaxPool Mean Min Mish Mod Mul Neg NonZero Not OneHot Or PRelu Pad Pow RNN
    Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
    ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize Round Scan Scatter
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
    Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
    TopK Transpose Trilu Unsqueeze Upsample Where Xor"""
)


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
        raise Refused("subgraphs nested deeper than 32 levels")
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g, depth + 1)
            for g in attr.graphs:
                yield from _graphs(g, depth + 1)


def _attribute_tensors(attr: Any) -> Iterator[Any]:
    """Every tensor an attribute holds: ``t``/``tensors`` (a ``Constant``'s ``value``) and
    the values and indices of ``sparse_tensor``/``sparse_tensors`` (``sparse_value``)."""
    if attr.HasField("t"):
        yield attr.t
    yield from attr.tensors
    sparse = [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []
    for item in (*sparse, *attr.sparse_tensors):
        yield item.values
        yield item.indices


def _tensors(graph: Any) -> Iterator[Any]:
    """The tensors of one graph (its subgraphs are walked by :func:`_graphs`)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            yield from _attribute_tensors(attr)


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _check_ensemble(node: Any, width: int, where: str) -> None:  # noqa: C901 (one check per attribute of an untrusted node)
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
        raise Refused(f"{where}: nodes_values missing (nodes_values_as_tensor not supported)")
    n = len(a.get("nodes_nodeids", []))
    if any(len(a.get(k, [])) != n for k in (*keys, "nodes_values")) or n == 0:
        raise Refused(f"{where}: the nodes_* lists differ in length")
    tree, nid = np.asarray(a["nodes_treeids"]), np.asarray(a["nodes_nodeids"])
    modes = [m.decode() if isinstance(m, bytes) else m for m in a["nodes_modes"]]
    if any(m not in (_LEAF, *_BRANCHES) for m in modes):
        raise Refused(f"{where}: unknown node mode")
    is_split = np.asarray([m != _LEAF for m in modes])
    index = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(tree, nid, strict=True))}
    if len(index) != n:
        raise Refused(f"{where}: (tree, node) ids repeat")

    def resolve(children: list[int]) -> np.ndarray:
        out = np.full(n, -1, np.int64)
        for k in np.flatnonzero(is_split):
            out[k] = index.get((int(tree[k]), int(children[k])), -1)
        return out

    left, right = resolve(a["nodes_truenodeids"]), resolve(a["nodes_falsenodeids"])
    feats = np.asarray(a["nodes_featureids"])[is_split]
    if ((feats < 0) | (feats >= width)).any():
        raise Refused(f"{where}: a branch feature is outside [0, {width})")
    if not np.isfinite(np.asarray(a["nodes_values"], np.float64)[is_split]).all():
        raise Refused(f"{where}: a branch threshold is not finite")
    check_links(left, right, is_split, where)
    has_parent = np.zeros(n, bool)
    has_parent[np.r_[left[is_split], right[is_split]]] = True
    first: dict[int, int] = {}
    for k, t in enumerate(tree.tolist()):
        first.setdefault(t, k)
    roots = np.flatnonzero(~has_parent)
    if sorted(roots.tolist()) != sorted(first.values()):
        raise Refused(f"{where}: each tree's first node must be its only root")
    leaf_tree, leaf_node = a.get(f"{prefix}_treeids", []), a.get(f"{prefix}_nodeids", [])
    ids, weights = a.get(f"{prefix}_ids", []), a.get(f"{prefix}_weights", [])
    if not len(leaf_tree) == len(leaf_node) == len(ids) == len(weights):
        raise Refused(f"{where}: the {prefix}_* lists differ in length")
    for t, i in zip(leaf_tree, leaf_node, strict=True):
        leaf = index.get((int(t), int(i)))
        if leaf is None or is_split[leaf]:
            raise Refused(f"{where}: a {prefix} weight is on no leaf")
    if prefix == "class":
        n_out = len(a.get("classlabels_int64s", []) or a.get("classlabels_strings", []))
    else:
        n_out = int(a.get("n_targets", 1))
    if ids and (min(ids) < 0 or max(ids) >= max(n_out, 1)):
        raise Refused(f"{where}: a {prefix} id is outside [0, {n_out})")
    if not np.isfinite(np.asarray(weights, np.float64)).all():
        raise Refused(f"{where}: a {prefix} weight is not finite")


def _constant(node: Any) -> np.ndarray | None:
    """A ``Constant`` node's value (dense ``value`` or ``value_*``), else None."""
    import onnx

    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    for attr in node.attribute:
        if attr.name == "value" and _elements(attr.t.dims) <= 64:
            return np.asarray(onnx.numpy_helper.to_array(attr.t))
        if attr.name in ("value_int", "value_ints", "value_float", "value_floats"):
            return np.asarray(onnx.helper.get_attribute_value(attr))
    return None


def _elements(dims: Any) -> int:
    count = 1
    for d in dims:
        count *= max(int(d), 0)
    return count


def _check_bounds(  # noqa: C901 (one bound per shape-making operator)
    graph: Any,
    outer: dict[str, np.ndarray],
    limits: StoreLimits,
    depth: int,
    outer_live: frozenset[str] = frozenset(),
) -> None:
    """Refuse a graph (and its subgraphs) that builds, from constants alone, a tensor of
    more than ``limits.max_onnx_elements`` elements, or loops more than
    ``limits.max_onnx_loop_trips`` times (a ``Loop`` needs a constant trip count).

    A shape computed from constants by other operators (``Mul``, ``Concat``, ...) cannot be
    bounded without evaluating them, and onnxruntime folds it at load: refused. Shapes
    computed at run time from the input (``live``: names that depend on a graph or subgraph
    input) are not bounded here.
    """
    cap = limits.max_onnx_elements
    constants = dict(outer)
    live = set(outer_live) | {i.name for i in graph.input}

    def declared(tensor: Any, what: str) -> None:
        if _elements(tensor.dims) > cap:
            raise Refused(f"{what} has more than {cap} elements (store.limits.max_onnx_elements)")

    for tensor in graph.initializer:
        declared(tensor, f"initializer {tensor.name[:40]!r}")
    for sparse in graph.sparse_initializer:
        declared(sparse, "a sparse initializer")
    import onnx

    for tensor in graph.initializer:
        if _elements(tensor.dims) <= 64:
            constants[tensor.name] = np.asarray(onnx.numpy_helper.to_array(tensor))
    for node in graph.node:
        where = f"{node.op_type} node {node.name[:40]!r}"
        for attr in node.attribute:
            for tensor in _attribute_tensors(attr):
                declared(tensor, f"a tensor of {where}")
            if attr.HasField("sparse_tensor"):
                declared(attr.sparse_tensor, f"a sparse tensor of {where}")
        value = _constant(node)
        if value is not None:
            constants[node.output[0]] = value
            continue
        _check_node_bounds(node, constants, frozenset(live), limits, where)
        if any(name in live for name in node.input):
            live.update(node.output)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                if depth > 32:
                    raise Refused("subgraphs nested deeper than 32 levels")
                _check_bounds(sub, constants, limits, depth + 1, frozenset(live))


#: Operators whose output size follows their inputs at ``_SHAPE_INPUTS[op]``.
_SHAPE_INPUTS = {
    "ConstantOfShape": (0,),
    "Expand": (1,),
    "Reshape": (1,),
    "Tile": (1,),
    "Range": (0, 1, 2),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Pad": (1,),
    "OneHot": (1,),
    "Loop": (0,),
}


def _check_node_bounds(  # noqa: C901 (one bound per shape-making operator)
    node: Any,
    constants: dict[str, np.ndarray],
    live: frozenset[str],
    limits: StoreLimits,
    where: str,
) -> None:
    """One node of :func:`_check_bounds`, whose constants so far are ``constants`` and whose
    input-dependent names are ``live``."""
    cap = limits.max_onnx_elements

    def const(i: int) -> np.ndarray | None:
        name = node.input[i] if i < len(node.input) else ""
        return constants.get(name) if name else None

    if node.domain in ("", "ai.onnx"):
        for i in _SHAPE_INPUTS.get(node.op_type, ()):
            name = node.input[i] if i < len(node.input) else ""
            if name and name not in constants and name not in live:
                raise Refused(
                    f"{where}: its input {name[:40]!r} is computed from constants only, "
                    "which the check does not evaluate (cannot bound it)"
                )

    def bound(count: float, what: str) -> None:
        if not count <= cap:
            raise Refused(
                f"{where}: {what} of more than {cap} elements (store.limits.max_onnx_elements)"
            )

    op = node.op_type if node.domain in ("", "ai.onnx") else ""
    try:
        if op in ("ConstantOfShape", "Expand", "Reshape"):
            shape = const(0 if op == "ConstantOfShape" else 1)
            if shape is not None:
                bound(float(np.prod(np.maximum(shape.astype(np.float64), 1))), "an output")
        elif op == "Tile" and (repeats := const(1)) is not None:
            base = const(0)
            size = 1.0 if base is None else float(base.size)
            bound(size * float(np.prod(repeats.astype(np.float64))), "a tiling")
        elif op == "Range":
            start, limit, delta = const(0), const(1), const(2)
            if delta is not None and float(delta) == 0:
                raise Refused(f"{where}: a delta of 0")
            if start is not None and limit is not None and delta is not None:
                bound(abs((float(limit) - float(start)) / float(delta)), "a range")
        elif op in ("Resize", "Upsample"):
            for i in (1, 2, 3):
                sizes = const(i)
                if sizes is not None and sizes.size:
                    bound(float(np.prod(np.abs(sizes.astype(np.float64)))), "a resize")
        elif op == "Pad" and (pads := const(1)) is not None and pads.size:
            bound(float(np.max(pads)), "a padding")
        elif op == "OneHot" and (depth := const(1)) is not None:
            bound(float(np.max(depth)), "a depth")
        elif op == "Loop":
            trips = const(0)
            if trips is None:
                raise Refused(f"{where}: a Loop without a constant trip count")
            count = float(np.max(trips))
            if not 0 <= count <= limits.max_onnx_loop_trips:
                raise Refused(
                    f"{where}: a Loop of {count:.0f} iterations, over the cap of "
                    f"{limits.max_onnx_loop_trips} (store.limits.max_onnx_loop_trips)"
                )
    except Refused:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise Refused(f"{where}: a constant input it cannot use") from exc


def check_onnx(  # noqa: C901 (the checks of an untrusted graph, in the order they depend on each other)
    data: bytes, *, n_features: int | None, task: str | None, limits: StoreLimits | None = None
) -> tuple[Any, OnnxInfo, int]:
    """Parse and check an ONNX model; returns it, what to run, and its input width.

    Without a ``task``, a model with several outputs (label and probabilities, as skl2onnx
    writes classifiers) is taken for a classifier, one with a single output for a regressor.
    """
    onnx, _ = import_onnx()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise Refused(f"not an ONNX protobuf ({type(exc).__name__})") from exc
    if len(model.functions):
        # Their bodies are graphs of their own (tensors, attributes by reference): refused
        # rather than checked; the supported exporters do not write them.
        raise Refused(
            f"model-local functions ({model.functions[0].name[:40]!r}, ...) are not supported"
        )
    graphs = list(_graphs(model.graph))
    for graph in graphs:
        for tensor in _tensors(graph):
            if tensor.data_location == 1 or len(tensor.external_data):
                raise Refused(f"tensor {tensor.name[:40]!r} uses external data (refused)")
        for node in graph.node:
            if node.domain not in _DOMAINS:
                raise Refused(
                    f"operator {node.op_type[:40]!r} of domain {node.domain[:40]!r} (custom)"
                )
            allowed = _ML_OPS if node.domain == "ai.onnx.ml" else _OPS
            if node.op_type not in allowed:
                raise Refused(
                    f"operator {node.op_type[:40]!r} is not among those the store accepts"
                )
    _check_bounds(model.graph, {}, limits or StoreLimits(), 0)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise Refused(f"onnx.checker: {str(exc)[:200]}") from exc
    if len(model.graph.input) != 1:
        raise Refused(f"{len(model.graph.input)} inputs; one feature matrix is supported")
    tin = model.graph.input[0].type.tensor_type
    dims = tin.shape.dim
    if tin.elem_type not in (_FLOAT, _DOUBLE) or len(dims) != 2:
        raise Refused("the input must be a float or double tensor of rank 2")
    # A fixed width that is not the declared one is the caller's to refuse, in its words.
    width = dims[1].dim_value if dims[1].HasField("dim_value") else 0
    width = width or n_features or 0
    if width < 1:
        raise Refused("the input width is not fixed: declare it (--features N)")
    for graph in graphs:
        for i, node in enumerate(graph.node):
            if node.domain in ("ai.onnx.ml",) and node.op_type == "TreeEnsemble":
                raise Refused("TreeEnsemble (ai.onnx.ml opset 5) is not supported yet")
            if node.op_type in ("TreeEnsembleClassifier", "TreeEnsembleRegressor"):
                _check_ensemble(node, width, f"node {i} ({node.op_type})")
    if task is None:
        task = "classification" if len(model.graph.output) > 1 else "regression"
    output = _pick_output(model.graph.output, task)
    is_map = output.type.WhichOneof("value") == "sequence_type"
    labels = None
    if task == "classification":
        labels = _file_labels(model.graph, output.name) or _metadata_labels(model)
    dtype = np.float32 if tin.elem_type == _FLOAT else np.float64
    info = OnnxInfo(model.graph.input[0].name, dtype, output.name, is_map, labels, task)
    return model, info, width


#: ``metadata_props`` keys read for class labels when the graph states none.
_METADATA_KEYS = ("classes", "class_names", "class_labels", "labels")
#: Operators whose attributes name the classes of the probability columns they produce.
_LABELLED = {
    "ZipMap": ("classlabels_strings", "classlabels_int64s"),
    "LinearClassifier": ("classlabels_strings", "classlabels_ints"),
    "SVMClassifier": ("classlabels_strings", "classlabels_ints"),
    "TreeEnsembleClassifier": ("classlabels_strings", "classlabels_int64s"),
}


def _label_list(values: Any) -> list[Any]:
    return [v.decode() if isinstance(v, bytes) else v for v in np.asarray(values).tolist()]


def _file_labels(graph: Any, output: str) -> list[Any] | None:  # noqa: C901 (one branch per way an ONNX file states its classes)
    """The class labels of ``output``'s columns, as the file states them; None if it does not.

    Nearest first, walking back from ``output``: a ``ZipMap``'s keys or a classifier
    operator's ``classlabels_*``. Failing that, the label output's own lookup, walking back
    from the other outputs: a ``LabelEncoder`` from the column index ``0..n-1`` to labels, or
    an ``ArrayFeatureExtractor`` over a constant list of labels (skl2onnx's MLP, for one).
    """
    producer = {out: node for node in graph.node for out in node.output}
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            value = _attrs(node).get("value")
            if value is not None:
                constants[node.output[0]] = value

    def walk(start: str) -> Iterator[Any]:
        seen: set[str] = set()
        frontier = [start]
        while frontier:
            name = frontier.pop(0)
            node = producer.get(name)
            if name in seen or node is None:
                continue
            seen.add(name)
            yield node
            frontier.extend(node.input)

    for node in walk(output):
        keys = _LABELLED.get(node.op_type)
        if keys is not None and node.domain == "ai.onnx.ml":
            a = _attrs(node)
            found = a.get(keys[0]) or a.get(keys[1])
            if found:
                return _label_list(found)
    for other in graph.output:
        if other.name == output:
            continue
        for node in walk(other.name):
            a = _attrs(node)
            if node.op_type == "LabelEncoder" and node.domain == "ai.onnx.ml":
                index = [int(k) for k in a.get("keys_int64s") or []]
                values = a.get("values_strings") or a.get("values_int64s")
                if index and values and sorted(index) == list(range(len(index))):
                    by_index = dict(zip(index, _label_list(values), strict=False))
                    return [by_index[k] for k in range(len(index))]
            if node.op_type == "ArrayFeatureExtractor" and node.input[0] in constants:
                import onnx

                array = onnx.numpy_helper.to_array(constants[node.input[0]])
                if array.ndim == 1 and array.size:
                    return _label_list(array)
    return None


def _metadata_labels(model: Any) -> list[Any] | None:
    """Labels a converter or its user wrote in the model's ``metadata_props``: a JSON list,
    or an object from ``"0".."n-1"`` to labels, under ``classes``, ``class_names``,
    ``class_labels`` or ``labels``. None if there is none, or it is not such a list of
    unique text or integer labels (metadata has no standard: other uses are left alone)."""
    props = {p.key: p.value for p in model.metadata_props}
    for key in _METADATA_KEYS:
        try:
            value = parse_json(props.get(key, "").encode(), max_bytes=1 << 16, max_depth=2)
        except Refused:
            continue
        if isinstance(value, dict) and sorted(value) == sorted(map(str, range(len(value)))):
            value = [value[str(i)] for i in range(len(value))]
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, str) or type(v) is int for v in value)
            and len(set(map(str, value))) == len(value)
        ):
            return list(value)
    return None


def class_columns(labels: list[Any], wanted: list[Any]) -> list[int] | None:
    """The file's output columns in ``wanted``'s order, or None when ``wanted`` is not the
    file's ``labels`` (in any order). Labels match by their text, so ``0`` given on a command
    line matches the label ``"0"``."""
    index = {str(c): i for i, c in enumerate(labels)}
    if len(index) != len(labels) or len(wanted) != len(labels):
        return None
    columns = [index.get(str(c), -1) for c in wanted]
    return columns if sorted(columns) == list(range(len(labels))) else None


def served_classes(
    name: str, given: list[Any] | None, labels: list[Any] | None, source: str | None
) -> list[Any] | None:
    """The classes to serve: the file's ``labels`` in the ``given`` order (a logged warning
    says when that reorders them), the given ones when the file states none."""
    if labels is None or given is None:
        return given or labels
    columns = class_columns(labels, given)
    where = source or "the model"
    if columns is None:
        raise PublishError(
            name,
            f"{where} states the classes {labels}, not the given {given} (--classes): leave "
            "them out to serve the file's, give the same labels in the order to serve, or "
            "export a model trained on the labels you want",
        )
    served = [labels[i] for i in columns]
    if served != labels:
        log.warning(
            "%s: serving the classes of %s in the given order %s (the file's order is %s): "
            "its probability columns are reordered to match",
            name,
            where,
            served,
            labels,
        )
    return served


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
        raise Refused("no probability output (a rank-2 float tensor or a ZipMap)")
    if not tensors:
        raise Refused("no float output for the regression values")
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
    """``X (n, n_features) -> (n, n_outputs) float64``, columns in ``classes`` order.

    The file's columns follow its own labels (:attr:`OnnxInfo.class_labels`); ``classes``
    must be the same labels, in any order (:func:`class_columns`), and the columns are
    permuted to it. A ZipMap's maps are read in the file's label order first.
    """
    labels = info.class_labels
    columns: list[int] | None = None
    if labels is not None and classes is not None:
        columns = class_columns(labels, classes)
        if columns is None:
            raise Refused(f"the classes {classes} are not the file's {labels}")
        if columns == list(range(len(labels))):
            columns = None

    def predict(X: np.ndarray) -> np.ndarray:
        x: np.ndarray = np.ascontiguousarray(X, dtype=info.input_dtype)
        (out,) = session.run([info.output_name], {info.input_name: x})
        if info.output_is_map:
            keys = labels if labels is not None else classes
            if keys is None:
                keys = sorted(out[0]) if out else []
            out = [[row[k] for k in keys] for row in out]
        result = np.asarray(out, dtype=np.float64).reshape(X.shape[0], -1)
        return result if columns is None else result[:, columns]

    return predict


def _onnx_bytes(model: Any, name: str) -> tuple[bytes, str]:
    if not hasattr(model, "SerializeToString"):
        raise PublishError(name, f"not an ONNX ModelProto: {type(model).__name__}")
    return model.SerializeToString(), "onnx"


def _open_onnx(
    data: bytes,
    fmt: str,
    *,
    name: str,
    version: int | None,
    filename: str,
    limits: StoreLimits,
    threads: int,
    n_features: int | None,
    task: str | None,
    classes: list[Any] | None,
) -> Opened:
    """Check the graph, load it in onnxruntime. The predictor's columns follow ``classes``
    when they are the file's labels in some order, else the file's own order: the caller
    compares ``classes`` with the ``found`` ones."""
    try:
        model, oinfo, width = check_onnx(data, n_features=n_features, task=task, limits=limits)
    except Refused as exc:
        raise UnsafeModelError(
            name, version, filename, reason=f"not a valid ONNX model ({exc})"
        ) from exc
    session = load_onnx_session(data, threads=threads, name=name)
    labels = oinfo.class_labels
    if classes is None or (labels is not None and class_columns(labels, classes) is None):
        classes = labels
    found = {
        "n_features": width,
        "task": oinfo.task,
        "n_outputs": None,
        "feature_names": None,
        "classes": oinfo.class_labels,
        "estimator": f"onnx {model.producer_name or 'unknown'} {model.producer_version}".strip(),
    }
    return data, session, make_onnx_predictor(session, oinfo, classes), found


def _imported_onnx(
    data: bytes, *, suffix: str, name: str, filename: str, limits: StoreLimits
) -> bytes:
    return data  # publish checks it, naming the file


def _structure(data: bytes) -> dict[str, Any]:
    """The operators of stored bytes, counted by domain and type."""
    import onnx

    model = onnx.load_model_from_string(data)
    ops = Counter(
        f"{node.domain or 'ai.onnx'}.{node.op_type}"
        for graph in _graphs(model.graph)
        for node in graph.node
    )
    return {"onnx_ops": dict(sorted(ops.items()))}


#: The ONNX format: checked closed, stored as given.
CODEC = NativeCodec(
    name="onnx",
    extensions=(".onnx",),
    how_to_convert="an exporter such as skl2onnx.to_onnx or torch.onnx.export",
    filename=ONNX_FILE,
    libraries=("onnx", "onnxruntime"),
    stored_fmt="onnx",
    bytes_fmt="onnx",
    serialise=_onnx_bytes,
    open=_open_onnx,
    imported=_imported_onnx,
    structure=_structure,
)
