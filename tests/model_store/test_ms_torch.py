"""Publishing and loading torch models: safetensors weights plus an architecture spec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_store import (
    MLP,
    InvalidSpecError,
    ModelStore,
    MultiTaskMLP,
    PublishError,
    build_torch_model,
)

MLP_CLF = {"arch": "mlp", "n_inputs": 4, "hidden": [8], "n_outputs": 3, "task": "classification"}
MLP_REG = {"arch": "mlp", "n_inputs": 4, "hidden": [5, 5], "n_outputs": 2, "task": "regression"}
MULTI = {
    "arch": "multitask_mlp",
    "n_inputs": 4,
    "trunk": [6],
    "tasks": [
        {"name": "kind", "type": "classification", "n_outputs": 3},
        {"name": "size", "type": "regression", "n_outputs": 1},
        {"name": "flag", "type": "classification", "n_outputs": 2},
    ],
}


def _net(spec: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_torch_model(spec)


def test_build_torch_model_architectures() -> None:
    assert isinstance(build_torch_model(MLP_CLF), MLP)
    net = build_torch_model(MULTI)
    assert isinstance(net, MultiTaskMLP)
    heads = net(torch.zeros(2, 4))
    assert {k: tuple(v.shape) for k, v in heads.items()} == {
        "kind": (2, 3),
        "size": (2, 1),
        "flag": (2, 2),
    }


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({**MLP_CLF, "arch": "resnet"}, "arch"),
        ({**MLP_CLF, "hidden": [0]}, "hidden"),
        ({**MLP_CLF, "n_inputs": "4"}, "n_inputs"),
        ({**MLP_CLF, "task": "ranking"}, "task"),
        ({**MLP_CLF, "dropout": 0.1}, "dropout"),
        ({**MULTI, "tasks": []}, "tasks"),
        ({**MULTI, "tasks": [MULTI["tasks"][0], MULTI["tasks"][0]]}, "tasks"),
    ],
)
def test_bad_specs_are_refused(spec: dict, key: str) -> None:
    with pytest.raises(InvalidSpecError) as info:
        build_torch_model(spec)
    assert info.value.key == key


def test_mlp_classification_round_trip(store: ModelStore, rng) -> None:
    net = _net(MLP_CLF)
    version = store.publish("tmlp", net, framework="torch", spec=MLP_CLF, classes=["a", "b", "c"])
    loaded = store.load("tmlp", version)
    assert (loaded.framework, loaded.task, loaded.classes) == (
        "torch",
        "classification",
        ["a", "b", "c"],
    )
    assert loaded.manifest["spec"] == MLP_CLF
    X = rng.normal(size=(7, 4))
    out = loaded.predict_outputs(X)
    assert out.dtype == np.float64 and out.shape == (7, 3)
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(X).float()), dim=1).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)


def test_mlp_regression_round_trip(store: ModelStore, rng) -> None:
    net = _net(MLP_REG)
    store.publish("treg", net, framework="torch", spec=MLP_REG, scores={"mae": 0.3})
    loaded = store.load("treg")
    assert (loaded.task, loaded.classes, loaded.n_outputs) == ("regression", None, 2)
    assert loaded.manifest["output_kind"] == "value"
    X = rng.normal(size=(5, 4))
    with torch.no_grad():
        expected = net(torch.from_numpy(X).float()).numpy()
    np.testing.assert_allclose(loaded.predict_outputs(X), expected, rtol=1e-6)


def test_multitask_round_trip(store: ModelStore, rng) -> None:
    net = _net(MULTI)
    tasks = [
        {"name": "kind", "type": "classification", "n_outputs": 3, "classes": ["x", "y", "z"]},
        {"name": "size", "type": "regression", "n_outputs": 1},
        {"name": "flag", "type": "classification", "n_outputs": 2},
    ]
    store.publish("multi", net, framework="torch", spec=MULTI, tasks=tasks)
    loaded = store.load("multi")
    assert loaded.task == "multitask" and loaded.n_outputs == 6
    assert loaded.tasks is not None
    assert [t["classes"] for t in loaded.tasks] == [["x", "y", "z"], None, [0, 1]]
    assert loaded.task_slices == {"kind": slice(0, 3), "size": slice(3, 4), "flag": slice(4, 6)}
    X = rng.normal(size=(9, 4))
    out = loaded.predict_outputs(X)
    assert out.shape == (9, 6) and out.dtype == np.float64
    with torch.no_grad():
        heads = net(torch.from_numpy(X).float())
    np.testing.assert_allclose(out[:, 0:3], torch.softmax(heads["kind"], 1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(out[:, 3:4], heads["size"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(out[:, 4:6], torch.softmax(heads["flag"], 1).numpy(), rtol=1e-6)


def test_weights_must_fit_the_spec(store: ModelStore) -> None:
    net = _net({**MLP_CLF, "hidden": [4]})
    with pytest.raises(PublishError, match="do not match the spec"):
        store.publish("tmlp", net, framework="torch", spec=MLP_CLF)


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        (MLP_CLF, {"spec": None}, "needs the architecture spec"),
        (MLP_CLF, {"classes": ["a", "b"]}, "2 classes for 3 outputs"),
        (MLP_CLF, {"task": "regression"}, "does not match"),
        (MLP_CLF, {"input_schema": {"n_features": 5}}, "takes 4 features, 5 were declared"),
        (MULTI, {"tasks": [{"name": "kind"}]}, "entries"),
        (MULTI, {"tasks": [{"name": "k"}, {}, {}]}, "name"),
    ],
)
def test_torch_publish_validates(store: ModelStore, spec, kwargs, match) -> None:
    args = {"framework": "torch", "spec": spec, **kwargs}
    with pytest.raises(PublishError, match=match):
        store.publish("bad", _net(spec), **args)


def test_torch_publish_needs_a_module(store: ModelStore) -> None:
    with pytest.raises(PublishError, match=r"torch\.nn\.Module"):
        store.publish("bad", object(), framework="torch", spec=MLP_CLF)
