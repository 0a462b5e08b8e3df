"""scikit-learn models through skops, with the store's own trusted-type allowlist.

skops trusts a broad default list; the store narrows it. Before skops sees a file, the
store reads the archive's ``schema.json`` (plain JSON, nothing imported) and collects every
type and node loader it names. Anything outside :data:`TRUSTED_TYPES` or
:data:`TRUSTED_LOADERS` is refused with :class:`UnsafeModelError`; otherwise exactly those
types are passed to ``skops.io.loads(trusted=...)``, which audits the tree once more.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ._forest import forest_predictor
from .errors import UnsafeModelError

__all__ = [
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


def _walk_nodes(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        if "__loader__" in obj or "__class__" in obj or "__module__" in obj:
            yield obj
        for value in obj.values():
            yield from _walk_nodes(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _walk_nodes(value)


def skops_types(data: bytes, *, name: str, version: int | None, filename: str) -> list[str]:
    """Check a skops archive against the allowlists without importing or running anything.

    Returns
    -------
    list of str
        The sorted ``module.class`` names the archive uses, all trusted.

    Raises
    ------
    UnsafeModelError
        The bytes are not a skops archive, or name a type or loader outside the allowlists.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise UnsafeModelError(
            name, version, filename, reason=f"not a skops archive ({exc.__class__.__name__})"
        ) from exc
    found: set[str] = set()
    for node in _walk_nodes(schema):
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
        found.add(type_name)
    return sorted(found)


def dump_sklearn(model: object, *, name: str) -> bytes:
    """Serialise ``model`` with skops, refusing it if it holds untrusted types."""
    import skops.io as sio  # imports all of scikit-learn (seconds): only when needed

    data = sio.dumps(model)
    skops_types(data, name=name, version=None, filename="model.skops")
    return data


def load_sklearn(data: bytes, *, name: str, version: int, filename: str) -> Any:
    """Load a skops archive after the allowlist check; never unpickles."""
    trusted = skops_types(data, name=name, version=version, filename=filename)
    import skops.io as sio  # imports all of scikit-learn (seconds): only when needed

    try:
        return sio.loads(data, trusted=trusted)
    except Exception as exc:  # skops' own audit or a malformed tree
        raise UnsafeModelError(
            name, version, filename, reason=f"skops refused the archive: {exc}"
        ) from exc


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
