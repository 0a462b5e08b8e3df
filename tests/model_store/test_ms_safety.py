"""Loading never runs code from the store's files.

Each malicious file below would create a marker file if anything executed it. The helper
``_swap`` replaces a stored file *and* fixes up the manifest's sha256 (an attacker with write
access to the store), so the checksum passes and the trust rules are what must refuse it.
Each payload is first shown to work when loaded the unsafe way.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import torch
from sklearn.linear_model import LogisticRegression

from model_store import ModelStore, UnsafeModelError, build_torch_model
from model_store._arrays_io import load_arrays
from model_store._sklearn_io import skops_types
from tests.model_store.ms_payload import Payload

SPEC = {"arch": "mlp", "n_inputs": 4, "hidden": [3], "n_outputs": 2, "task": "classification"}


def _swap(store: ModelStore, name: str, filename: str, data: bytes, kind_dir: str = "") -> None:
    version_dir = (store.root / kind_dir / name if kind_dir else store.root / name) / "1"
    (version_dir / filename).write_bytes(data)
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][filename] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest_path.write_text(json.dumps(manifest))


def _os_system_archive(command: str) -> bytes:
    """A skops archive whose schema asks skops to call ``os.system(command)``."""
    schema = {
        "__class__": "system",
        "__module__": "os",
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [
                {
                    "__class__": "str",
                    "__module__": "builtins",
                    "__loader__": "JsonNode",
                    "content": json.dumps(command),
                    "is_json": True,
                    "__id__": 2,
                }
            ],
            "__id__": 1,
        },
        "__id__": 0,
        "protocol": 2,
        "_skops_version": "0.16.0",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return buffer.getvalue()


@pytest.fixture
def sk_store(store: ModelStore, clf_data) -> ModelStore:
    X, y = clf_data
    store.publish("lr", LogisticRegression().fit(X, y))
    return store


def test_os_system_payload_in_skops_schema(sk_store: ModelStore, tmp_path: Path) -> None:
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    sio.loads(_os_system_archive(f"touch {proof}"), trusted=["os.system"])
    assert proof.exists(), "the payload runs when trusted"

    _swap(sk_store, "lr", "model.skops", _os_system_archive(f"touch {marker}"))
    with pytest.raises(UnsafeModelError, match=r"'os\.system'") as info:
        sk_store.load("lr")
    assert info.value.type_name == "os.system"
    assert info.value.filename == "model.skops"
    assert not marker.exists()


def test_custom_class_payload_in_skops_archive(sk_store: ModelStore, tmp_path: Path) -> None:
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    sio.loads(sio.dumps(Payload(str(proof))), trusted=["tests.model_store.ms_payload.Payload"])
    assert proof.exists(), "the payload runs when trusted"

    _swap(sk_store, "lr", "model.skops", sio.dumps(Payload(str(marker))))
    with pytest.raises(UnsafeModelError, match=r"tests\.model_store\.ms_payload\.Payload"):
        sk_store.load("lr")
    assert not marker.exists()


def test_payload_nested_inside_a_trusted_estimator(sk_store: ModelStore, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    model = sio.loads((sk_store.root / "lr" / "1" / "model.skops").read_bytes(), trusted=[])
    model.hidden_ = Payload(str(marker))
    data = sio.dumps(model)
    _swap(sk_store, "lr", "model.skops", data)
    with pytest.raises(UnsafeModelError, match=r"tests\.model_store\.ms_payload\.Payload"):
        sk_store.load("lr")
    assert not marker.exists()


def test_plain_pickle_instead_of_skops(sk_store: ModelStore, tmp_path: Path) -> None:
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(str(proof))))
    assert proof.exists(), "the payload runs when unpickled"

    _swap(sk_store, "lr", "model.skops", pickle.dumps(Payload(str(marker))))
    with pytest.raises(UnsafeModelError, match="not a skops archive"):
        sk_store.load("lr")
    assert not marker.exists()


def test_function_loader_is_refused_even_for_trusted_names() -> None:
    schema = {
        "__class__": "float64",
        "__module__": "numpy",
        "__loader__": "FunctionNode",
        "__id__": 0,
        "protocol": 2,
        "_skops_version": "0.16.0",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    with pytest.raises(UnsafeModelError, match="FunctionNode"):
        skops_types(buffer.getvalue(), name="m", version=1, filename="model.skops")


def test_torch_pickle_instead_of_safetensors(store: ModelStore, tmp_path: Path) -> None:
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    store.publish("net", build_torch_model(SPEC), framework="torch", spec=SPEC)

    buffer = io.BytesIO()
    torch.save({"net.0.weight": Payload(str(proof))}, buffer)
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert proof.exists(), "the payload runs under torch.load(weights_only=False)"

    buffer = io.BytesIO()
    torch.save({"net.0.weight": Payload(str(marker))}, buffer)
    _swap(store, "net", "model.safetensors", buffer.getvalue())
    with pytest.raises(UnsafeModelError, match="not a safetensors file") as info:
        store.load("net")
    assert info.value.filename == "model.safetensors"
    assert not marker.exists()


def test_raw_pickle_instead_of_safetensors(store: ModelStore, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    store.publish("net", build_torch_model(SPEC), framework="torch", spec=SPEC)
    _swap(store, "net", "model.safetensors", pickle.dumps(Payload(str(marker))))
    with pytest.raises(UnsafeModelError):
        store.load("net")
    assert not marker.exists()


def test_object_array_in_npz_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([Payload(str(marker))], dtype=object))
    with pytest.raises(UnsafeModelError, match="not a plain npz"):
        load_arrays(buffer.getvalue(), name="s", version=1, filename="arrays.npz", kind="strategy")
    assert not marker.exists()
