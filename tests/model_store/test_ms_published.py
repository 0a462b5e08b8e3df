"""What a model answered at publish (``published_outputs.npz``): recorded with the version,
listed in its manifest, handed back by a load and compared by :func:`largest_difference`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from model_store import ModelStore, largest_difference


def _publish(root: Path) -> ModelStore:
    store = ModelStore(root)
    X = np.random.default_rng(0).normal(size=(60, 5))
    store.publish("lr", LogisticRegression().fit(X, (X[:, 1] > 0).astype(np.int64)))
    return store


def test_publish_records_rows_and_the_outputs_a_load_gives_on_them(tmp_store: Path) -> None:
    store = _publish(tmp_store)
    assert "published_outputs.npz" in store.manifest("lr")["files"]
    loaded = store.load("lr")
    assert loaded.published is not None
    X, outputs = loaded.published["X"], loaded.published["outputs"]
    assert X.shape == (16, 5) and outputs.shape == (16, 2)
    assert np.array_equal(outputs, loaded.predict_outputs(X))
    assert len(np.unique(outputs[:, 0])) > 1  # rows the model tells apart, not 16 zeros
    assert largest_difference(loaded) == 0.0


def test_a_version_published_without_the_record_has_nothing_to_compare(tmp_store: Path) -> None:
    store = _publish(tmp_store)
    version_dir = tmp_store / "lr" / "1"
    (version_dir / "published_outputs.npz").unlink()
    manifest = json.loads((version_dir / "manifest.json").read_text())
    del manifest["files"]["published_outputs.npz"]  # as a store written before it (unsigned)
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    loaded = store.load("lr")
    assert loaded.published is None
    assert largest_difference(loaded) is None
