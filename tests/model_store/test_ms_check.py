"""``python -m model_store.check FILE --framework F`` (issue 23): the store's publish and load
checks on one file before it is published, in a child under the load limits; what it found,
or the refusal, exit 0 or 2."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import lightgbm
import numpy as np
import pytest
import skops.io
import xgboost
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from model_store import ModelStoreError
from model_store.check import check_file, main
from tests.model_store.hostile import onnx_big_zeros, onnx_endless_loop

pytestmark = pytest.mark.slow

X = np.random.default_rng(0).normal(size=(300, 5))
y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("check")
    out = {
        "xgboost": d / "m.json",
        "lightgbm": d / "m.txt",
        "sklearn": d / "m.skops",
        "onnx": d / "m.onnx",
        "loop": d / "loop.onnx",
        "big": d / "big.onnx",
        "pickle": d / "m.pkl",
    }
    booster = xgboost.XGBClassifier(n_estimators=6, max_depth=3).fit(X, y).get_booster()
    booster.save_model(out["xgboost"])
    lgbm = lightgbm.LGBMClassifier(n_estimators=4, num_leaves=7, verbose=-1).fit(X, y)
    lgbm.booster_.save_model(out["lightgbm"])
    lr = LogisticRegression().fit(X, y)
    skops.io.dump(lr, out["sklearn"])
    out["onnx"].write_bytes(to_onnx(lr, X[:1].astype(np.float32)).SerializeToString())
    out["loop"].write_bytes(onnx_endless_loop())
    out["big"].write_bytes(onnx_big_zeros())
    out["pickle"].write_bytes(pickle.dumps(lr))
    return out


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm", "sklearn", "onnx"])
def test_a_file_the_store_accepts_is_described_with_exit_0(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], framework: str
) -> None:
    code, out, err = _run(capsys, str(files[framework]), "--framework", framework, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report == json.loads(json.dumps(check_file(files[framework], framework), default=str))
    assert report["n_features"] == 5 and report["classes"] == [0, 1]
    assert report["task"] == "classification" and report["n_outputs"] == 2
    if framework == "xgboost":
        trees = json.loads(files["xgboost"].read_text())["learner"]["gradient_booster"]["model"]
        assert report["trees"] == len(trees["trees"]) == 6 and report["nodes"] >= 6
    if framework == "lightgbm":
        assert report["trees"] == 4 and report["nodes"] >= 4
    if framework == "onnx":
        assert report["onnx_ops"]["ai.onnx.ml.LinearClassifier"] == 1


def test_the_plain_output_says_what_was_found(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, str(files["lightgbm"]), "--framework", "lightgbm")
    assert code == 0
    assert "trees: 4" in out and "n_features: 5" in out
    assert out.rstrip().endswith("the store would accept this file")


@pytest.mark.parametrize(
    ("case", "framework", "limits", "reason"),
    [
        ("pickle", "sklearn", [], "is a pickle"),
        ("xgboost", "lightgbm", [], "imported from .txt"),
        ("loop", "onnx", [], "store.limits.max_onnx_loop_trips"),
        (
            "loop",
            "onnx",
            ["max_onnx_loop_trips=10000000000000", "max_load_wall_s=3"],
            "did not finish within 3 s (store.limits.max_load_wall_s)",
        ),
        (
            "big",
            "onnx",
            ["max_onnx_elements=1000000000", f"max_load_bytes={1 << 30}"],
            "1024 MiB of address space",
        ),
    ],
    ids=["pickle", "wrong-framework", "loop-over-cap", "loop-hangs", "allocates-past-cap"],
)
def test_a_file_the_store_refuses_is_named_with_the_reason_and_exit_2(
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    case: str,
    framework: str,
    limits: list[str],
    reason: str,
) -> None:
    args = [str(files[case]), "--framework", framework]
    for limit in limits:
        args += ["--limit", limit]
    code, out, err = _run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith(f"refused: {files[case]}: ") and reason in err, err


def test_check_file_raises_the_store_s_own_refusal(files: dict[str, Path]) -> None:
    with pytest.raises(ModelStoreError, match="max_onnx_loop_trips"):
        check_file(files["loop"], "onnx")


def test_a_malformed_limit_is_a_usage_error(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as usage:
        main([str(files["onnx"]), "--framework", "onnx", "--limit", "max_tress=5"])
    assert usage.value.code == 2
    assert "max_tress" in capsys.readouterr().err
