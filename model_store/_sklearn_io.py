"""scikit-learn models through skops, with the store's own trusted-type allowlist.

skops trusts a broad default list; the store narrows it. Before skops sees a file, the
store reads the archive's ``schema.json`` (plain JSON, nothing imported) and collects every
type and node loader it names. Anything outside :data:`TRUSTED_TYPES` or
:data:`TRUSTED_LOADERS` is refused with :class:`UnsafeModelError`; otherwise exactly those
types are passed to ``skops.io.loads(trusted=...)``, which audits the tree once more.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._forest import forest_predictor
from ._json import parse_json
from ._limits import StoreLimits
from ._refused import Refused
from ._tree_check import check_trees
from ._zipcheck import check_zip
from .errors import UnsafeModelError

__all__ = [
    "TRUSTED_BIT_GENERATORS",
    "TRUSTED_LOADERS",
    "TRUSTED_TYPES",
    "dump_sklearn",
    "load_sklearn",
    "make_sklearn_predictor",
    "skops_types",
]

_NUMPY_SCALARS = [
    "bool",
    "bool_",
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "str_",
    "bytes_",
]

_SKLEARN = {
    "sklearn.ensemble._forest": [
        "RandomForestClassifier",
        "RandomForestRegressor",
        "ExtraTreesClassifier",
        "ExtraTreesRegressor",
    ],
    "sklearn.ensemble._gb": ["GradientBoostingClassifier", "GradientBoostingRegressor"],
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting": [
        "HistGradientBoostingClassifier",
        "HistGradientBoostingRegressor",
    ],
    "sklearn.ensemble._hist_gradient_boosting.binning": ["_BinMapper"],
    "sklearn.ensemble._hist_gradient_boosting.predictor": ["TreePredictor"],
    "sklearn.tree._classes": [
        "DecisionTreeClassifier",
        "DecisionTreeRegressor",
        "ExtraTreeClassifier",
        "ExtraTreeRegressor",
    ],
    "sklearn.tree._tree": ["Tree"],
    "sklearn.dummy": ["DummyClassifier", "DummyRegressor"],
    "sklearn.linear_model._logistic": ["LogisticRegression"],
    "sklearn.linear_model._ridge": ["Ridge"],
    "sklearn.linear_model._base": ["LinearRegression"],
    "sklearn.neural_network._multilayer_perceptron": ["MLPClassifier", "MLPRegressor"],
    "sklearn.neural_network._stochastic_optimizers": ["AdamOptimizer", "SGDOptimizer"],
    "sklearn.pipeline": ["Pipeline"],
    "sklearn.preprocessing._data": ["StandardScaler"],
    "sklearn.preprocessing._label": ["LabelBinarizer", "LabelEncoder"],
    "sklearn._loss.loss": [
        "AbsoluteError",
        "ExponentialLoss",
        "HalfBinomialLoss",
        "HalfGammaLoss",
        "HalfMultinomialLoss",
        "HalfPoissonLoss",
        "HalfSquaredError",
        "HalfTweedieLoss",
        "HalfTweedieLossIdentity",
        "HuberLoss",
        "PinballLoss",
    ],
    "sklearn._loss._loss": [
        "CyAbsoluteError",
        "CyExponentialLoss",
        "CyHalfBinomialLoss",
        "CyHalfGammaLoss",
        "CyHalfMultinomialLoss",
        "CyHalfPoissonLoss",
        "CyHalfSquaredError",
        "CyHalfTweedieLoss",
        "CyHalfTweedieLossIdentity",
        "CyHuberLoss",
        "CyPinballLoss",
    ],
    "sklearn._loss.link": [
        "HalfLogitLink",
        "IdentityLink",
        "Interval",
        "LogLink",
        "LogitLink",
        "MultinomialLogit",
    ],
}

#: Every type a stored scikit-learn model may contain, as ``module.qualname``.
TRUSTED_TYPES: frozenset[str] = frozenset(
    [f"builtins.{t}" for t in ("dict", "list", "tuple", "str", "int", "float", "bool")]
    + ["builtins.NoneType", "builtins.complex", "builtins.slice", "builtins.set"]
    + ["numpy.ndarray", "numpy.dtype", "numpy.random.mtrand.RandomState"]
    + ["numpy.random._generator.Generator"]
    + [f"numpy.{t}" for t in _NUMPY_SCALARS]
    + [f"{module}.{cls}" for module, classes in _SKLEARN.items() for cls in classes]
)

#: skops node loaders that only rebuild data or allowlisted classes. Loaders that resolve
#: or call functions (FunctionNode, MethodNode, PartialNode, ConstructorFromReduceNode,
#: OperatorFuncNode, DefaultDictNode) are left out on purpose.
TRUSTED_LOADERS: frozenset[str] = frozenset(
    {
        "CachedNode",
        "DictNode",
        "DTypeNode",
        "JsonNode",
        "ListNode",
        "LossNode",
        "NdArrayNode",
        "ObjectNode",
        "RandomGeneratorNode",
        "RandomStateNode",
        "SetNode",
        "SliceNode",
        "TreeNode",
        "TupleNode",
        "TypeNode",
    }
)


#: Bit generators a ``numpy.random.Generator`` may be rebuilt with. skops turns the name
#: stored (as a JSON string) in the generator's state into ``getattr(numpy.random, name)``
#: and calls it, so the name is checked like a type.
TRUSTED_BIT_GENERATORS = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})
_SCHEMA = "schema.json"


def _walk_nodes(obj: Any) -> Iterator[dict[str, Any]]:
    """Every dict that looks like a skops node, without recursion."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "__loader__" in value or "__class__" in value or "__module__" in value:
                yield value
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def _bit_generator_name(node: dict[str, Any]) -> object:
    """The name skops will look up in ``numpy.random`` for a Generator node (or None)."""
    try:
        state = node["content"]["bit_generator"]["content"]["bit_generator"]
        return json.loads(state["content"])
    except (KeyError, TypeError, ValueError, RecursionError):
        return None


def _read_schema(data: bytes, limits: StoreLimits) -> Any:
    archive = check_zip(data, limits)
    with archive:
        try:
            info = archive.getinfo(_SCHEMA)
        except KeyError as exc:
            raise Refused("no schema.json") from exc
        if info.file_size > limits.max_schema_bytes:
            raise Refused(
                f"schema.json is {info.file_size} bytes, over the cap of {limits.max_schema_bytes}"
            )
        raw = archive.read(info)
    try:
        return parse_json(raw, max_bytes=limits.max_schema_bytes, max_depth=limits.max_json_depth)
    except Refused as exc:
        raise Refused(f"schema.json: {exc}") from exc


def skops_types(
    data: bytes,
    *,
    name: str,
    version: int | None,
    filename: str,
    limits: StoreLimits | None = None,
) -> list[str]:
    """Check a skops archive against the allowlists without importing or running anything.

    The archive's members are bounded first (declared sizes, npy headers; see
    :func:`model_store._zipcheck.check_zip`), then ``schema.json`` is parsed within the
    size, depth and node caps, and every node's type, loader and (for random generators)
    bit generator name is checked.

    Returns
    -------
    list of str
        The sorted ``module.class`` names the archive uses, all trusted.

    Raises
    ------
    UnsafeModelError
        The bytes are not a skops archive, exceed a cap, or name a type or loader outside
        the allowlists.
    """
    limits = limits or StoreLimits()
    try:
        schema = _read_schema(data, limits)
    except Refused as exc:
        raise UnsafeModelError(
            name, version, filename, reason=f"not a skops archive ({exc})"
        ) from exc
    found: set[str] = set()
    n_nodes = 0
    for node in _walk_nodes(schema):
        n_nodes += 1
        if n_nodes > limits.max_skops_nodes:
            raise UnsafeModelError(
                name, version, filename, reason=f"more than {limits.max_skops_nodes} skops nodes"
            )
        loader, module, cls = node.get("__loader__"), node.get("__module__"), node.get("__class__")
        if not (isinstance(module, str) and isinstance(cls, str)):
            if loader == "CachedNode":  # a back-reference to a node checked elsewhere
                continue
            raise UnsafeModelError(name, version, filename, reason="malformed skops node")
        type_name = f"{module}.{cls}"
        if type_name not in TRUSTED_TYPES:
            raise UnsafeModelError(name, version, filename, type_name=type_name)
        if loader not in TRUSTED_LOADERS:
            raise UnsafeModelError(
                name,
                version,
                filename,
                type_name=type_name,
                reason=f"skops loader {loader!r} (for {type_name!r}) is not trusted",
            )
        if loader == "RandomGeneratorNode":
            bit_generator = _bit_generator_name(node)
            if bit_generator not in TRUSTED_BIT_GENERATORS:
                raise UnsafeModelError(
                    name, version, filename, type_name=f"numpy.random.{bit_generator}"
                )
        found.add(type_name)
    return sorted(found)


def dump_sklearn(model: object, *, name: str) -> bytes:
    """Serialise ``model`` with skops, refusing it if it holds untrusted types."""
    import skops.io as sio  # imports all of scikit-learn (seconds): only when needed

    data: bytes = sio.dumps(model)
    skops_types(data, name=name, version=None, filename="model.skops")
    try:
        check_trees(model)
    except Refused as exc:
        raise UnsafeModelError(name, None, "model.skops", reason=f"malformed tree: {exc}") from exc
    return data


def load_sklearn(
    data: bytes,
    *,
    name: str,
    version: int | None,
    filename: str,
    limits: StoreLimits | None = None,
    n_features: int | None = None,
) -> Any:
    """Load a skops archive after the allowlist check, then check its tree structures.

    Never unpickles. Nothing predicts before :func:`model_store._tree_check.check_trees`
    has passed; ``n_features`` (the manifest's) must match the estimator's own.
    """
    trusted = skops_types(data, name=name, version=version, filename=filename, limits=limits)
    import skops.io as sio  # imports all of scikit-learn (seconds): only when needed

    try:
        estimator = sio.loads(data, trusted=trusted)
    except Exception as exc:  # skops' own audit or a malformed tree
        raise UnsafeModelError(
            name, version, filename, reason=f"skops refused the archive: {exc}"
        ) from exc
    own = getattr(estimator, "n_features_in_", n_features)
    if n_features is not None and own != n_features:
        raise UnsafeModelError(
            name, version, filename, reason=f"model has {own!r} features, manifest {n_features}"
        )
    try:
        check_trees(estimator)
    except Refused as exc:
        raise UnsafeModelError(name, version, filename, reason=f"malformed tree: {exc}") from exc
    return estimator


def make_sklearn_predictor(
    estimator: Any, *, task: str, classes: list[Any] | None, n_outputs: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap an estimator as ``X (n_events, n_features) -> (n_events, n_outputs) float64``.

    Classification returns ``predict_proba`` columns reordered to ``classes``. Random forests
    and extra-trees go through :func:`forest_predictor`, bit-for-bit equal and without
    scikit-learn's per-tree Python overhead.
    """
    if task == "classification":
        predict_proba = forest_predictor(estimator, "predict_proba") or estimator.predict_proba
        model_classes = np.asarray(estimator.classes_).tolist()
        order = [model_classes.index(c) for c in (classes or model_classes)]
        if order == list(range(len(model_classes))):
            return lambda X: np.asarray(predict_proba(X), dtype=np.float64)
        index = np.asarray(order)
        return lambda X: np.asarray(predict_proba(X), dtype=np.float64)[:, index]

    predict = forest_predictor(estimator, "predict") or estimator.predict

    def predict_values(X: np.ndarray) -> np.ndarray:
        return np.asarray(predict(X), dtype=np.float64).reshape(X.shape[0], n_outputs)

    return predict_values
