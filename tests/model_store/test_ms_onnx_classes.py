"""ONNX classifiers serve the classes their file states: read from the file, never
contradicted by ``classes`` (``--classes``), reordered (and said) when given in another order."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_wine
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from model_store import ModelStore, PublishError, UnsafeModelError
from tests.model_store.hostile import edit_manifest

X, _Y = load_wine(return_X_y=True)
TEXT = np.array([f"class_{i}" for i in _Y])
FILE_CLASSES = ["class_0", "class_1", "class_2"]
# skl2onnx sums in float32: the tolerance docs/model-store.md states for ONNX.
TOL = 1e-5


@pytest.fixture(scope="module")
def wine_lr() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, TEXT)


def _onnx_file(model: object, path: Path, zipmap: bool) -> Path:
    last = model.steps[-1][1] if isinstance(model, Pipeline) else model
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(last): {"zipmap": zipmap}})
    path.write_bytes(onx.SerializeToString())
    return path


@pytest.mark.parametrize("zipmap", [False, True])
def test_the_files_text_labels_are_served(
    store: ModelStore, tmp_path: Path, wine_lr: Pipeline, zipmap: bool
) -> None:
    path = _onnx_file(wine_lr, tmp_path / "wine_lr.onnx", zipmap)
    store.publish_file("lr", path, framework="onnx")
    loaded = store.load("lr", threads=1)
    assert loaded.classes == FILE_CLASSES
    out = loaded.predict_outputs(X)
    np.testing.assert_allclose(out, wine_lr.predict_proba(X), atol=TOL)
    assert (np.asarray(loaded.classes)[out.argmax(axis=1)] == wine_lr.predict(X)).all()


@pytest.mark.parametrize(
    "estimator",
    [
        MLPClassifier((8,), max_iter=300, random_state=0),  # labels: ArrayFeatureExtractor
        SVC(probability=True, random_state=0),  # SVMClassifier's classlabels_strings
        GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0),
    ],
    ids=type,
)
def test_other_converters_labels_are_read(store: ModelStore, estimator: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the MLP's ConvergenceWarning, SVC's probA_
        model = make_pipeline(StandardScaler(), estimator).fit(X, TEXT)
        options = {id(model[-1]): {"zipmap": False}}
        onx = to_onnx(model, X[:1].astype(np.float32), options=options)
    store.publish("m", onx, framework="onnx")
    loaded = store.load("m", threads=1)
    assert loaded.classes == FILE_CLASSES
    np.testing.assert_allclose(loaded.predict_outputs(X), model.predict_proba(X), atol=TOL)


@pytest.mark.parametrize("zipmap", [False, True])
@pytest.mark.parametrize(
    "given",
    [[2, 1, 0], [0, 1, 2], ["class_2", "class_1"], [*FILE_CLASSES, "class_3"], ["a", "b", "c"]],
)
def test_classes_that_contradict_the_file_are_refused(
    store: ModelStore, tmp_path: Path, wine_lr: Pipeline, zipmap: bool, given: list
) -> None:
    path = _onnx_file(wine_lr, tmp_path / "wine_lr.onnx", zipmap)
    with pytest.raises(PublishError) as info:
        store.publish_file("lr", path, framework="onnx", classes=given)
    message = str(info.value)
    assert "wine_lr.onnx" in message and "model.onnx" not in message
    assert str(FILE_CLASSES) in message and str(given) in message
    assert store.models() == []


@pytest.mark.parametrize("zipmap", [False, True])
@pytest.mark.parametrize("order", [[2, 1, 0], [2, 0, 1]])
def test_the_files_classes_in_another_order_reorder_the_scores(
    store: ModelStore,
    tmp_path: Path,
    wine_lr: Pipeline,
    zipmap: bool,
    order: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = _onnx_file(wine_lr, tmp_path / "wine_lr.onnx", zipmap)
    given = [FILE_CLASSES[i] for i in order]
    with caplog.at_level(logging.WARNING, logger="model_store"):
        store.publish_file("lr", path, framework="onnx", classes=given)
    assert re.search(r"wine_lr\.onnx in the given order .* reordered", caplog.text)
    loaded = store.load("lr", threads=1)
    assert loaded.classes == given
    out = loaded.predict_outputs(X)
    np.testing.assert_allclose(out, wine_lr.predict_proba(X)[:, order], atol=TOL)
    assert (np.asarray(given)[out.argmax(axis=1)] == wine_lr.predict(X)).all()


def test_the_same_order_is_accepted_without_a_warning(
    store: ModelStore, wine_lr: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    onx = to_onnx(wine_lr, X[:1].astype(np.float32), options={id(wine_lr[-1]): {"zipmap": False}})
    with caplog.at_level(logging.WARNING, logger="model_store"):
        store.publish("lr", onx, framework="onnx", classes=FILE_CLASSES)
    assert store.load("lr").classes == FILE_CLASSES
    assert "reordered" not in caplog.text


def test_a_tree_ensemble_with_text_labels_refuses_integer_classes(
    store: ModelStore, tmp_path: Path
) -> None:
    rf = RandomForestClassifier(5, max_depth=3, random_state=0).fit(X, TEXT)
    path = _onnx_file(rf, tmp_path / "wine_rf.onnx", zipmap=False)
    with pytest.raises(PublishError, match=r"wine_rf\.onnx states the classes"):
        store.publish_file("rf", path, framework="onnx", classes=[0, 1, 2])
    store.publish_file("rf", path, framework="onnx")
    assert store.load("rf").classes == FILE_CLASSES


def test_integer_labels_are_read_and_match_command_line_text(
    store: ModelStore, caplog: pytest.LogCaptureFixture
) -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, _Y + 5)
    onx = to_onnx(model, X[:1].astype(np.float32), options={id(model[-1]): {"zipmap": True}})
    store.publish("lr", onx, framework="onnx")
    assert store.load("lr").classes == [5, 6, 7]
    # A command line cannot tell "7" from 7: labels match by their text.
    with caplog.at_level(logging.WARNING, logger="model_store"):
        store.publish("lr", onx, framework="onnx", classes=["7", "6", "5"])
    assert "the model in the given order [7, 6, 5]" in caplog.text
    loaded = store.load("lr", threads=1)
    assert loaded.classes == [7, 6, 5]
    expected = model.predict_proba(X)[:, ::-1]
    np.testing.assert_allclose(loaded.predict_outputs(X), expected, atol=TOL)


def _softmax_model(label_encoder: bool = True, metadata: dict[str, str] | None = None) -> bytes:
    """Probabilities from a softmax; the label output (if any) maps the argmax through a
    LabelEncoder (index -> text), as converters of generic networks write it."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.array([[1.0, 0.0, -1.0]], np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3])]
    if label_encoder:
        nodes += [
            helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1, keepdims=0),
            helper.make_node(
                "LabelEncoder",
                ["index"],
                ["label"],
                domain="ai.onnx.ml",
                keys_int64s=[0, 1, 2],
                values_strings=["low", "mid", "high"],
                default_string="?",
            ),
        ]
        outputs.insert(0, helper.make_tensor_value_info("label", TensorProto.STRING, [None]))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])]
    graph = helper.make_graph(nodes, "softmax", inputs, outputs, [weights])
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 2)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8)
    helper.set_model_props(model, metadata or {})
    return model.SerializeToString()


def test_a_label_encoder_names_the_columns(store: ModelStore) -> None:
    store.publish("le", _softmax_model(), framework="onnx")
    loaded = store.load("le", threads=1)
    assert loaded.classes == ["low", "mid", "high"]
    with pytest.raises(PublishError, match=r"\['low', 'mid', 'high'\]"):
        store.publish("le", _softmax_model(), framework="onnx", classes=[0, 1, 2])


@pytest.mark.parametrize(
    ("metadata", "classes"),
    [
        ({"classes": '["low", "mid", "high"]'}, ["low", "mid", "high"]),
        ({"class_names": '{"0": "low", "1": "mid", "2": "high"}'}, ["low", "mid", "high"]),
        ({"labels": "[10, 20, 30]"}, [10, 20, 30]),
        ({"classes": "low,mid,high"}, [0, 1, 2]),  # not JSON: metadata of another kind
        ({"labels": '["a", "a", "b"]'}, [0, 1, 2]),  # not unique
        ({}, [0, 1, 2]),
    ],
)
def test_metadata_names_the_columns_when_the_graph_does_not(
    store: ModelStore, metadata: dict[str, str], classes: list
) -> None:
    data = _softmax_model(label_encoder=False, metadata=metadata)
    store.publish("m", data, framework="onnx", task="classification")
    assert store.load("m").classes == classes
    if classes != [0, 1, 2]:
        with pytest.raises(PublishError, match="states the classes"):
            store.publish("m", data, framework="onnx", task="classification", classes=[0, 1, 2])


def test_a_manifest_whose_classes_are_not_the_files_is_refused_at_load(
    store: ModelStore, tmp_store: Path, wine_lr: Pipeline
) -> None:
    onx = to_onnx(wine_lr, X[:1].astype(np.float32), options={id(wine_lr[-1]): {"zipmap": False}})
    store.publish("lr", onx, framework="onnx")
    # What the store wrote for such a file before it read the labels.
    edit_manifest(tmp_store, "lr", lambda manifest: manifest.update(classes=[0, 1, 2]))
    with pytest.raises(
        UnsafeModelError, match=r"states the classes \[.class_0.*publish the file again"
    ):
        store.load("lr")
