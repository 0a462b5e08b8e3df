"""The hostile store against ONNX (issue 23, findings 3 and 4): no file outside the store is
ever read, and no graph allocates or loops without bound, all refused before onnxruntime
sees the model.

Each case is a clean model published through :meth:`ModelStore.publish`, its ``model.onnx``
then replaced (manifest re-sealed) by a small hand-made graph of the same interface, loaded
in a child process with an address-space and CPU limit and a timeout
(``hostile.run_child``). On the code before the fix, the external tensors loaded (reading a
file of the host), the ``ConstantOfShape`` allocated 1.6 GB (more than the child's
headroom) and the ``Loop`` never returned.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression

from model_store import ModelStore
from tests.model_store.hostile import (
    onnx_big_zeros,
    onnx_endless_loop,
    onnx_regression,
    run_child,
    swap,
)

pytestmark = pytest.mark.slow

CHILD_LOADS = """
store = ModelStore(sys.argv[1])
for name in store.models():
    run(name, lambda name=name: store.load(name).predict_outputs(numpy.zeros((2, 4))))
"""

SECRET = "onnx_hostile_secret.bin"  # a file of the host, relative to the worker's directory


def _external(tensor: TensorProto, location: str = SECRET) -> TensorProto:
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("float_data")
    tensor.ClearField("raw_data")
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    return tensor


def _sparse_constant() -> bytes:
    values = _external(helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5]))
    indices = helper.make_tensor("i", TensorProto.INT64, [1], [0])
    sparse = helper.make_sparse_tensor(values, indices, [1])
    return onnx_regression([helper.make_node("Constant", [], ["b"], sparse_value=sparse)])


def _dense_constant_in_subgraph() -> bytes:
    inner = _external(helper.make_tensor("c", TensorProto.FLOAT, [1], [0.5]))
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c_out"], value=inner)],
        "then",
        [],
        [helper.make_tensor_value_info("c_out", TensorProto.FLOAT, [1])],
    )
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    return onnx_regression(
        [helper.make_node("If", ["cond"], ["b"], then_branch=branch, else_branch=branch)],
        extra_init=[cond],
    )


def _function_local_tensor() -> bytes:
    inner = _external(helper.make_tensor("c", TensorProto.FLOAT, [1], [0.5]))
    function = helper.make_function(
        "local",
        "Secret",
        [],
        ["out"],
        [helper.make_node("Constant", [], ["out"], value=inner)],
        [helper.make_opsetid("", 17)],
    )
    return onnx_regression(
        [helper.make_node("Secret", [], ["b"], domain="local")], functions=[function]
    )


def _folded_shape() -> bytes:
    # The same 1.6 GB, its shape a product of two constants: onnxruntime folds it at load.
    half = helper.make_tensor("half", TensorProto.INT64, [1], [20_000])
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    return onnx_regression(
        [
            helper.make_node("Mul", ["half", "half"], ["shape"]),
            helper.make_node("ConstantOfShape", ["shape"], ["big"], value=zero),
            helper.make_node("ReduceSum", ["big"], ["b"], keepdims=1),
        ],
        extra_init=[half],
    )


def _random_op() -> bytes:
    return onnx_regression([helper.make_node("RandomNormal", [], ["b"], shape=[1])])


CASES = {
    "onnx_sparse_constant_external": (_sparse_constant, "uses external data"),
    "onnx_subgraph_constant_external": (_dense_constant_in_subgraph, "uses external data"),
    "onnx_function_local_external": (_function_local_tensor, "model-local functions"),
    "onnx_constant_of_shape_1_6_gb": (onnx_big_zeros, "max_onnx_elements"),
    "onnx_constant_of_shape_folded": (_folded_shape, "computed from constants only"),
    "onnx_loop_10_12": (onnx_endless_loop, "max_onnx_loop_trips"),
    "onnx_unlisted_operator": (_random_op, "not among those the store accepts"),
}


@pytest.fixture(scope="module")
def onnx_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    onx = to_onnx(LinearRegression().fit(X, X[:, 0]), X[:1])
    root = tmp_path_factory.mktemp("onnx") / "store"
    store = ModelStore(root)
    (Path(__file__).resolve().parents[2] / SECRET).unlink(missing_ok=True)
    for case, (make, _) in CASES.items():
        store.publish(case, onx, framework="onnx")
        data = make()
        onnx.load_model_from_string(data)  # a well-formed protobuf
        swap(root, case, "model.onnx", data)
    secret = Path(__file__).resolve().parents[2] / SECRET  # the child's working directory
    secret.write_bytes(np.float32(123.0).tobytes())
    try:
        code, results, stderr = run_child(CHILD_LOADS, root, cpu_s=60, timeout=120)
    finally:
        secret.unlink(missing_ok=True)
    return {"code": code, "results": results, "stderr": stderr}


@pytest.mark.parametrize("case", CASES)
def test_onnx_reading_outside_or_without_bound_is_refused_before_onnxruntime(
    onnx_results: dict[str, Any], case: str
) -> None:
    code = onnx_results["code"]
    how = signal.Signals(-code).name if code < 0 else f"exit {code}"
    assert code == 0, f"child died ({how}): {onnx_results['stderr'][-2000:]}"
    result = onnx_results["results"][case]
    assert result["error"] == "UnsafeModelError", result
    assert CASES[case][1] in result["message"] and "model.onnx" in result["message"], result
    assert result["rss_growth"] < 100 << 20, result
    assert result["cpu_s"] < 5, result


def test_onnx_bounds_follow_store_limits() -> None:
    from model_store import StoreLimits
    from model_store._onnx_io import check_onnx
    from model_store._refused import Refused

    data = onnx_big_zeros()
    with pytest.raises(Refused, match="max_onnx_elements"):
        check_onnx(data, n_features=4, task="regression")
    _, info, width = check_onnx(
        data,
        n_features=4,
        task="regression",
        limits=StoreLimits(max_onnx_elements=400_000_000),
    )
    assert (info.output_name, width) == ("Y", 4)


def _holder(kind: str) -> tuple[list[Any], list[Any], list[Any]]:
    """Nodes, initializers and sparse initializers making ``b`` with one external tensor
    held the ``kind`` way."""
    dense = _external(helper.make_tensor("d", TensorProto.FLOAT, [1], [0.5]))
    indices = helper.make_tensor("i", TensorProto.INT64, [1], [0])
    plain = helper.make_tensor("p", TensorProto.FLOAT, [1], [0.5])
    if kind == "initializer":
        dense.name = "b"
        return [], [dense], []
    if kind == "sparse_initializer":
        return [], [], [helper.make_sparse_tensor(dense, indices, [1])]
    if kind == "sparse_indices":
        external_indices = _external(helper.make_tensor("i", TensorProto.INT64, [1], [0]))
        sparse = helper.make_sparse_tensor(plain, external_indices, [1])
        return [helper.make_node("Constant", [], ["b"], sparse_value=sparse)], [], []
    if kind == "constant_value":
        return [helper.make_node("Constant", [], ["b"], value=dense)], [], []
    if kind == "constant_sparse_value":
        sparse = helper.make_sparse_tensor(dense, indices, [1])
        return [helper.make_node("Constant", [], ["b"], sparse_value=sparse)], [], []
    raise AssertionError(kind)


HOLDERS = (
    "initializer",
    "sparse_initializer",
    "sparse_indices",
    "constant_value",
    "constant_sparse_value",
)


@pytest.mark.parametrize("place", ["graph", "if_branch", "loop_body", "nested"])
@pytest.mark.parametrize("kind", HOLDERS)
def test_external_data_is_refused_in_every_attribute_and_subgraph(kind: str, place: str) -> None:
    """Every way a tensor can hold data, at every depth: refused by the check alone."""
    from model_store._onnx_io import check_onnx
    from model_store._refused import Refused

    nodes, inits, sparse = _holder(kind)
    out = [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])]
    for level in range({"graph": 0, "if_branch": 1, "loop_body": 1, "nested": 2}[place]):
        if place == "loop_body":
            body = helper.make_graph(
                [*nodes, helper.make_node("Identity", ["c"], ["c_out"])],
                "body",
                [
                    helper.make_tensor_value_info("n", TensorProto.INT64, []),
                    helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                ],
                [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), *out],
                initializer=inits,
                sparse_initializer=sparse,
            )
            nodes = [helper.make_node("Loop", ["trips", "cond"], ["b_all"], body=body)]
            nodes.append(helper.make_node("ReduceSum", ["b_all"], ["b"], keepdims=0))
        else:
            branch = helper.make_graph(
                nodes, f"branch{level}", [], out, initializer=inits, sparse_initializer=sparse
            )
            cond = f"cond{level}"
            nodes = [helper.make_node("If", [cond], ["b"], then_branch=branch, else_branch=branch)]
        inits, sparse = [], []
    trips = helper.make_tensor("trips", TensorProto.INT64, [], [2])
    conds = [
        helper.make_tensor(n, TensorProto.BOOL, [], [True]) for n in ("cond", "cond0", "cond1")
    ]
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 1], [1.0, 2.0, 3.0, 4.0])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            *nodes,
            helper.make_node("Add", ["XW", "b"], ["Y"]),
        ],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n", 1])],
        initializer=[w, trips, *conds, *inits],
        sparse_initializer=sparse,
    )
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    with pytest.raises(Refused, match="uses external data"):
        check_onnx(data, n_features=4, task="regression")
