"""Serving your own models and data from the command line: ``train --data``, ``store
publish``, ``fit``, ``replay`` of CSV files, and every refusal (exit 2, the file named)."""

from __future__ import annotations

import csv
import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import skops.io as sio
import xgboost as xgb
import yaml
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier

from model_store import ModelStore
from worker import cli

pytestmark = pytest.mark.slow  # each case runs the command line: trains, publishes or serves

Run = Callable[..., tuple[int, str, str]]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def invoke(*argv: object) -> tuple[int, str, str]:
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


BC = load_breast_cancer()
NAMES = [n.replace(" ", "_") for n in BC.feature_names]


def write_csv(path: Path, X: np.ndarray, y: list[object], names: list[str] = NAMES) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, "diagnosis"])
        for row, label in zip(X.tolist(), y, strict=True):
            writer.writerow([*row, label])
    return path


@pytest.fixture(scope="module")
def bc_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    labels = ["benign" if t else "malignant" for t in BC.target]
    return write_csv(tmp_path_factory.mktemp("data") / "bc.csv", BC.data, labels)


def test_train_on_a_csv_with_named_columns(run: Run, bc_csv: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    code, out, err = run(
        "train", "--data", bc_csv, "--target", "diagnosis", "--store", store,
        "--models", "rf,xgboost,lightgbm",
    )  # fmt: skip
    assert code == 0, err
    assert "| model | xgboost |" in out and "| strategy | soft_vote |" in out
    manifest = ModelStore(store).manifest("lightgbm")
    assert manifest["input_schema"]["feature_names"] == NAMES
    assert manifest["classes"] == ["benign", "malignant"]
    config = yaml.safe_load((tmp_path / "streamfuse.yaml").read_text())
    assert [m["name"] for m in config["models"]] == ["rf", "xgboost", "lightgbm"]
    # The same file replayed offline: events carry {name: value} features, labels by column.
    code, out, err = run(
        "replay", "--config", tmp_path / "streamfuse.yaml", "--events", bc_csv,
        "--target", "diagnosis",
    )  # fmt: skip
    assert code == 0, err
    assert f"{len(BC.target)} events: {len(BC.target)} predicted, 0 dead-lettered" in out
    assert "| strategy | soft_vote |" in out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: [r[:-1] for r in rows], "no target column 'diagnosis'"),
        (lambda rows: [[*r[:3], "abc" if i else r[3], *r[4:]] for i, r in enumerate(rows)],
         "column 'mean_area' is not numeric (row 3: 'abc'); encode it"),
        (lambda rows: [[*r[:-1], "" if i == 5 else r[-1]] for i, r in enumerate(rows)],
         "target column 'diagnosis' has an empty or NaN value at row 7"),
        (lambda rows: [[*r[:-1], "1"] for r in rows], "has one class only"),
        (lambda rows: [[*r[:2], "nan", *r[3:]] for r in rows],
         "column 'mean_perimeter' has an empty, NaN or infinite value at row 2"),
    ],
)  # fmt: skip
def test_bad_data_files_stop_with_exit_2_naming_the_column(
    run: Run, tmp_path: Path, edit: Callable[[list[list[str]]], list[list[str]]], message: str
) -> None:
    rows = [
        [*map(str, x), str(t)] for x, t in zip(BC.data[:40].tolist(), BC.target[:40], strict=True)
    ]
    header = [*NAMES, "diagnosis"] if "no target" not in message else NAMES
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *edit(rows)])
    code, _, err = run("train", "--data", path, "--target", "diagnosis", "--store", tmp_path / "s")
    assert code == 2
    assert str(path) in err and message in err, err


def test_train_data_needs_a_target(run: Run, bc_csv: Path, tmp_path: Path) -> None:
    code, _, err = run("train", "--data", bc_csv, "--store", tmp_path / "s")
    assert code == 2 and "--target" in err


# -- store publish and fit ------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models trained with their own libraries on 60% of breast_cancer, in native formats."""
    d = tmp_path_factory.mktemp("models")
    X, y = BC.data[:340], BC.target[:340]
    xgb.XGBClassifier(n_estimators=30, max_depth=4, random_state=0).fit(X, y).save_model(
        d / "xgb.json"
    )
    lgb.LGBMClassifier(n_estimators=30, random_state=0, verbose=-1).fit(X, y).booster_.save_model(
        d / "lgb.txt"
    )
    rf = RandomForestClassifier(20, max_depth=6, random_state=0).fit(X, y)
    sio.dump(rf, d / "rf.skops")
    onx = to_onnx(rf, X[:1].astype(np.float32), options={id(rf): {"zipmap": False}})
    (d / "rf.onnx").write_bytes(onx.SerializeToString())
    (d / "names.txt").write_text("\n".join(NAMES) + "\n")
    return {
        "xgboost": d / "xgb.json",
        "lightgbm": d / "lgb.txt",
        "sklearn": d / "rf.skops",
        "onnx": d / "rf.onnx",
        "names": d / "names.txt",
    }


def publish_all(run: Run, store: Path, files: dict[str, Path]) -> None:
    for name, framework in [("xgb", "xgboost"), ("lgb", "lightgbm"), ("rf", "sklearn"),
                            ("rf_onnx", "onnx")]:  # fmt: skip
        code, out, err = run(
            "store", "--store", store, "publish", name, files[framework],
            "--framework", framework, "--feature-names", files["names"], "--classes", "0,1",
        )  # fmt: skip
        assert code == 0, err
        assert f"{name}: published v1" in out and "30 features (named)" in out


def test_publish_then_fit_writes_a_config_serving_them(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    publish_all(run, store, model_files)
    heldout = write_csv(tmp_path / "heldout.csv", BC.data[340:450], BC.target[340:450].tolist())
    code, out, err = run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")
    assert code == 0, err
    assert "| strategy | stacking |" in out
    config = yaml.safe_load((tmp_path / "streamfuse.yaml").read_text())
    assert {m["name"] for m in config["models"]} == {"xgb", "lgb", "rf", "rf_onnx"}
    s = ModelStore(store)
    fitted = s.load_strategy("soft_vote").fitted_on
    assert fitted == {"xgb": 1, "lgb": 1, "rf": 1, "rf_onnx": 1}
    test = write_csv(tmp_path / "test.csv", BC.data[450:], BC.target[450:].tolist())
    code, out, err = run(
        "replay", "--config", tmp_path / "streamfuse.yaml", "--events", test,
        "--target", "diagnosis",
    )  # fmt: skip
    assert code == 0, err
    assert f"{len(BC.target) - 450} predicted, 0 dead-lettered" in out


def test_publish_with_a_reference_sample_then_fit_keeps_it(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    train_rows = write_csv(tmp_path / "train.csv", BC.data[:340], BC.target[:340].tolist())
    code, out, err = run(
        "store", "--store", store, "publish", "rf", model_files["sklearn"],
        "--framework", "sklearn", "--feature-names", model_files["names"],
        "--reference", train_rows,
    )  # fmt: skip
    assert code == 0, err
    assert f"drift reference: profile v1 from 340 rows of {train_rows}" in out
    s = ModelStore(store)
    first = s.load_profile("reference")
    assert first.meta["features_from"] == "reference" and first.meta["scopes"] == []
    code, _, err = run(
        "store", "--store", store, "publish", "xgb", model_files["xgboost"],
        "--framework", "xgboost", "--feature-names", model_files["names"], "--classes", "0,1",
    )  # fmt: skip
    assert code == 0, err
    heldout = write_csv(tmp_path / "heldout.csv", BC.data[340:450], BC.target[340:450].tolist())
    code, _, err = run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")
    assert code == 0, err
    profile = s.load_profile("reference")
    assert profile.version == 2 and profile.fitted_on == {"rf": 1, "xgb": 1}
    assert profile.meta["features_from"] == "reference"  # the training rows, not held-out
    assert profile.meta["n_rows"] == {"features": 340, "outputs": 110}
    np.testing.assert_array_equal(profile.arrays["feature_edges"], first.arrays["feature_edges"])
    assert ["model", "rf", "classification"] in profile.meta["scopes"]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    code, _, err = run(
        "store", "--store", store, "publish", "rf", model_files["sklearn"],
        "--framework", "sklearn", "--feature-names", model_files["names"], "--reference", bad,
    )  # fmt: skip
    assert code == 2 and f"{bad}: the header does not match the models' 30 feature names" in err


def test_fit_with_columns_in_another_order_reads_them_by_name(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    publish_all(run, store, model_files)
    order = NAMES[::-1]
    X = BC.data[340:450][:, ::-1]
    heldout = write_csv(tmp_path / "h.csv", X, BC.target[340:450].tolist(), names=order)
    code, _, err = run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")
    assert code == 0, err
    P = ModelStore(store).load_dataset("heldout").arrays["X"]
    np.testing.assert_array_equal(P, BC.data[340:450])


@pytest.mark.parametrize("ext", ["skops", "safetensors", "json", "ubj", "txt", "onnx"])
def test_publishing_a_pickle_under_any_extension_exits_2(
    run: Run, tmp_path: Path, ext: str
) -> None:
    framework = {"skops": "sklearn", "safetensors": "torch", "json": "xgboost", "ubj": "xgboost",
                 "txt": "lightgbm", "onnx": "onnx"}[ext]  # fmt: skip
    path = tmp_path / f"model.{ext}"
    marker = tmp_path / "ran"
    path.write_bytes(pickle.dumps(Path))  # a harmless pickle; a malicious one would run code
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"arch": "mlp", "n_inputs": 30, "hidden": [4], "n_outputs": 2,
                                "task": "classification"}))  # fmt: skip
    code, _, err = run(
        "store", "--store", tmp_path / "s", "publish", "m", path, "--framework", framework,
        "--spec", spec,
    )  # fmt: skip
    assert code == 2
    assert str(path) in err
    assert not marker.exists()
    assert ModelStore(tmp_path / "s").models() == []


@pytest.mark.parametrize("ext", ["pkl", "pickle", "joblib"])
def test_pickle_files_are_refused_with_the_way_to_convert(
    run: Run, tmp_path: Path, ext: str
) -> None:
    path = tmp_path / f"model.{ext}"
    path.write_bytes(pickle.dumps(1))
    code, _, err = run("store", "--store", tmp_path / "s", "publish", "m", path, "--framework",
                       "sklearn")  # fmt: skip
    assert code == 2
    assert "is a pickle" in err and "skops.io.dump" in err


def test_publish_refusals_name_the_file(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    not_json = tmp_path / "model.json"
    not_json.write_bytes(b"\x00\x01binary junk")
    code, _, err = run("store", "--store", tmp_path / "s", "publish", "m", not_json,
                       "--framework", "xgboost")  # fmt: skip
    assert code == 2 and "not a valid XGBoost JSON model" in err and str(not_json) in err
    code, _, err = run("store", "--store", tmp_path / "s", "publish", "m", model_files["onnx"],
                       "--framework", "onnx", "--features", "12")  # fmt: skip
    assert code == 2 and "takes 30 features, 12 were declared" in err
    assert str(model_files["onnx"]) in err


def test_a_tampered_file_stops_start_up_with_exit_2(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    publish_all(run, store, model_files)
    heldout = write_csv(tmp_path / "h.csv", BC.data[340:450], BC.target[340:450].tolist())
    assert run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")[0] == 0
    path = store / "xgb" / "1" / "model.json"
    data = bytearray(path.read_bytes())
    at = data.index(b'"split_indices":[') + len(b'"split_indices":[')
    data[at] = ord("1") if data[at] != ord("1") else ord("2")  # same size, another feature
    path.write_bytes(bytes(data))
    code, _, err = run("replay", "--config", tmp_path / "streamfuse.yaml", "--events", heldout)
    assert code == 2
    assert "'model.json'" in err and "sha256" in err


def test_a_missing_framework_stops_start_up_with_the_pip_line(
    run: Run, tmp_path: Path, model_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    publish_all(run, store, model_files)
    heldout = write_csv(tmp_path / "h.csv", BC.data[340:450], BC.target[340:450].tolist())
    assert run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")[0] == 0
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    code, _, err = run("replay", "--config", tmp_path / "streamfuse.yaml", "--events", heldout)
    assert code == 2
    assert "pip install 'streamfuse[lightgbm]'" in err


def test_help_and_store_list_import_no_framework(tmp_path: Path) -> None:
    ModelStore(tmp_path / "s")
    (tmp_path / "s").mkdir()
    heavy = ("torch", "xgboost", "lightgbm", "onnxruntime", "onnx", "sklearn.ensemble")
    code = (
        "import sys, contextlib, io\n"
        "from worker import cli\n"
        "for argv in (['--help'], ['store', '--store', sys.argv[1], 'list']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        cli.main(argv)\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.stdout.strip() == "[]", out.stderr


def test_parquet_files_train_and_fit(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {n: BC.data[:, j] for j, n in enumerate(NAMES)}
    pq.write_table(pa.table({**columns, "diagnosis": BC.target}), tmp_path / "bc.parquet")
    code, _, err = run(
        "train",
        "--data",
        tmp_path / "bc.parquet",
        "--target",
        "diagnosis",
        "--store",
        tmp_path / "trained",
        "--models",
        "lightgbm,xgboost",
    )
    assert code == 0, err
    assert ModelStore(tmp_path / "trained").manifest("xgboost")["classes"] == [0, 1]
    store = tmp_path / "store"
    publish_all(run, store, model_files)
    code, _, err = run(
        "fit",
        "--store",
        store,
        "--heldout",
        tmp_path / "bc.parquet",
        "--target",
        "diagnosis",
        "--config-out",
        tmp_path / "p.yaml",
    )
    assert code == 0, err


def test_publish_xgboost_ubj_and_torch_safetensors(run: Run, tmp_path: Path) -> None:
    import safetensors.torch

    from model_store import build_torch_model

    X, y = BC.data[:200], BC.target[:200]
    xgb.XGBClassifier(n_estimators=5).fit(X, y).save_model(tmp_path / "m.ubj")
    code, _, err = run(
        "store",
        "--store",
        tmp_path / "s",
        "publish",
        "x",
        tmp_path / "m.ubj",
        "--framework",
        "xgboost",
    )
    assert code == 0, err
    spec = {"arch": "mlp", "n_inputs": 30, "hidden": [8], "n_outputs": 2, "task": "classification"}
    net = build_torch_model(spec)
    safetensors.torch.save_file(net.state_dict(), tmp_path / "net.safetensors")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    code, _, err = run(
        "store",
        "--store",
        tmp_path / "s",
        "publish",
        "net",
        tmp_path / "net.safetensors",
        "--framework",
        "torch",
        "--spec",
        tmp_path / "spec.json",
    )
    assert code == 0, err
    loaded = ModelStore(tmp_path / "s").load("net")
    assert loaded.predict_outputs(X).shape == (200, 2)
    code, _, err = run(
        "store",
        "--store",
        tmp_path / "s",
        "publish",
        "net2",
        tmp_path / "net.safetensors",
        "--framework",
        "torch",
    )
    assert code == 2 and "--spec" in err


# -- columns by name, or a clear stop --------------------------------------------------------


def table_of(out: str) -> str:
    """The score table of a command's output (not the lines naming files)."""
    return "\n".join(line for line in out.splitlines() if line.startswith("|"))


def test_reversed_columns_fit_and_replay_exactly_as_the_ordered_file(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    rows = slice(340, 450)
    ordered = write_csv(tmp_path / "o.csv", BC.data[rows], BC.target[rows].tolist())
    backwards = write_csv(
        tmp_path / "r.csv", BC.data[rows][:, ::-1], BC.target[rows].tolist(), names=NAMES[::-1]
    )
    tables = {}
    for label, heldout in [("ordered", ordered), ("reversed", backwards)]:
        store = tmp_path / label / "store"
        publish_all(run, store, model_files)
        code, out, err = run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")
        assert code == 0, err
        assert "file order" not in err
        tables[label] = table_of(out)
        for name in ("stacking", "weighted_average"):
            stored = ModelStore(store).load_strategy(name).arrays
            tables[label] += repr({k: np.asarray(v).tolist() for k, v in stored.items()})
    assert tables["reversed"] == tables["ordered"]
    config = tmp_path / "ordered" / "streamfuse.yaml"
    replays = [
        table_of(run("replay", "--config", config, "--events", f, "--target", "diagnosis")[1])
        for f in (ordered, backwards)
    ]
    assert replays[0] == replays[1]


def test_reversed_event_file_gives_the_ordered_events(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    from worker.tools.produce import file_events

    store = tmp_path / "store"
    publish_all(run, store, model_files)
    rows = slice(450, 470)
    ordered = write_csv(tmp_path / "o.csv", BC.data[rows], BC.target[rows].tolist())
    backwards = write_csv(
        tmp_path / "r.csv", BC.data[rows][:, ::-1], BC.target[rows].tolist(), names=NAMES[::-1]
    )
    s = ModelStore(store)
    got = [file_events(s, "xgb", f, "diagnosis", "e") for f in (ordered, backwards)]
    for events, _ in got:
        for e in events:
            e.pop("ts")
    assert got[0] == got[1]
    assert got[1][0][0]["features"]["mean_radius"] == BC.data[450, 0]


def renamed(names: list[str], n: int) -> list[str]:
    """The first ``n`` names spelt with spaces, as another tool might write them."""
    return [c.replace("_", " ") if i < n else c for i, c in enumerate(names)]


def test_a_partial_name_match_stops_fit_with_exit_2_naming_the_columns(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    publish_all(run, store, model_files)
    names = renamed(NAMES, 3)[::-1]  # 27 of 30 names match; columns reversed
    heldout = write_csv(
        tmp_path / "h.csv", BC.data[340:450][:, ::-1], BC.target[340:450].tolist(), names=names
    )
    code, _, err = run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert f"{heldout}: the header does not match the models' 30 feature names" in err
    assert "missing 3 of the models' names ['mean_radius', 'mean_texture', 'mean_perimeter']" in err
    assert "3 unknown column(s) ['mean perimeter', 'mean texture', 'mean radius']" in err
    assert not (tmp_path / "streamfuse.yaml").exists()
    assert ModelStore(store).strategies() == []


def test_a_partial_name_match_stops_replay_and_produce(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    publish_all(run, store, model_files)
    heldout = write_csv(tmp_path / "h.csv", BC.data[340:450], BC.target[340:450].tolist())
    assert run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")[0] == 0
    events = write_csv(
        tmp_path / "e.csv", BC.data[450:], BC.target[450:].tolist(), names=renamed(NAMES, 10)
    )
    config = tmp_path / "streamfuse.yaml"
    code, _, err = run("replay", "--config", config, "--events", events, "--target", "diagnosis")
    assert code == 2
    assert "missing 10 of the models' names ['mean_radius'," in err
    assert "10 unknown column(s) ['mean radius'," in err
    # produce refuses before it connects to any broker.
    code, _, err = run("produce", "--config", config, "--data", events, "--target", "diagnosis")
    assert code == 2 and f"{events}: the header does not match" in err


def test_an_unknown_column_beyond_the_target_stops_with_exit_2(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    publish_all(run, store, model_files)
    path = tmp_path / "h.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["patient_id", *NAMES, "diagnosis"])
        held = zip(BC.data[340:450].tolist(), BC.target[340:450], strict=True)
        writer.writerows([i, *row, label] for i, (row, label) in enumerate(held))
    code, _, err = run("fit", "--store", store, "--heldout", path, "--target", "diagnosis")
    assert code == 2
    assert "1 unknown column(s) ['patient_id']; leave those columns out" in err
    # Without --target, the label column is an unknown one too; the message says so.
    from worker.tools.produce import file_events
    from worker.tools.tabular import DataFileError

    plain = write_csv(tmp_path / "p.csv", BC.data[:5], BC.target[:5].tolist())
    with pytest.raises(DataFileError, match=r"\['diagnosis'\].*name the label with --target"):
        file_events(ModelStore(store), "xgb", plain, None, "e")


def test_models_without_names_take_columns_in_order_and_say_so_once(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    for name in ("xgb", "rf"):
        framework = "xgboost" if name == "xgb" else "sklearn"
        file = model_files[framework]
        code, _, err = run(
            "store", "--store", store, "publish", name, file, "--framework", framework,
            "--features", 30, "--classes", "0,1",
        )  # fmt: skip
        assert code == 0, err
    heldout = write_csv(
        tmp_path / "h.csv", BC.data[340:450], BC.target[340:450].tolist(),
        names=[f"f{j}" for j in range(30)],
    )  # fmt: skip
    code, _, err = run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")
    assert code == 0, err
    notice = f"streamfuse: {heldout}: the models have no feature names, so its 30 columns are"
    assert err.count(notice) == 1, err
    short = write_csv(tmp_path / "s.csv", BC.data[:5, :29], BC.target[:5].tolist(), NAMES[:29])
    code, _, err = run("fit", "--store", store, "--heldout", short, "--target", "diagnosis")
    assert code == 2 and "the models take 30 features; the file has 29 columns besides" in err


# -- messages a newcomer can act on ----------------------------------------------------------


def test_store_takes_store_after_the_action_too(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    code, out, err = run(
        "store", "publish", "xgb", model_files["xgboost"], "--framework", "xgboost",
        "--store", store,
    )  # fmt: skip
    assert code == 0, err
    assert "xgb: published v1" in out
    code, out, _ = run("store", "list", "--store", store)
    assert code == 0 and out.strip() == "xgb: 1*"
    code, out, _ = run("store", "--store", store, "list")
    assert code == 0 and out.strip() == "xgb: 1*"


def test_fit_says_which_models_to_republish_with_which_classes(
    run: Run, tmp_path: Path, model_files: dict[str, Path]
) -> None:
    store = tmp_path / "store"
    text = np.asarray([f"class_{t}" for t in BC.target])  # as pandas' codes would be
    rf = RandomForestClassifier(10, max_depth=4, random_state=0).fit(BC.data[:340], text[:340])
    sio.dump(rf, tmp_path / "rf.skops")
    names = model_files["names"]
    code, _, err = run(
        "store", "publish", "rf", tmp_path / "rf.skops", "--framework", "sklearn",
        "--feature-names", names, "--store", store,
    )  # fmt: skip
    assert code == 0, err
    for name, framework in [("xgb", "xgboost"), ("lgb", "lightgbm")]:
        code, _, err = run(
            "store", "publish", name, model_files[framework], "--framework", framework,
            "--feature-names", names, "--store", store,
        )  # fmt: skip
        assert code == 0, err
    heldout = write_csv(tmp_path / "h.csv", BC.data[340:450], text[340:450].tolist())
    code, _, err = run("fit", "--store", store, "--heldout", heldout, "--target", "diagnosis")
    assert code == 2
    assert "config key" not in err and len(err.strip().splitlines()) == 1, err
    assert "'rf' has ['class_0', 'class_1']; 'lgb', 'xgb' have [0, 1]" in err
    assert (
        f"Republish 'lgb', 'xgb' with the classes in their output order, e.g. streamfuse "
        f"store publish lgb FILE --framework lightgbm --feature-names NAMES.txt --classes "
        f"class_0,class_1 --store {store}"
    ) in err
    assert "XGBoost and LightGBM files cannot hold text class names" in err
    assert not (tmp_path / "streamfuse.yaml").exists()
    # Doing what it says is enough.
    for name, framework in [("xgb", "xgboost"), ("lgb", "lightgbm")]:
        code, _, err = run(
            "store", "publish", name, model_files[framework], "--framework", framework,
            "--feature-names", names, "--classes", "class_0,class_1", "--store", store,
        )  # fmt: skip
        assert code == 0, err
    code, out, err = run(
        "fit", "--store", store, "--heldout", heldout, "--target", "diagnosis",
        "--bootstrap", "kafka-1:9092,kafka-2:9092",
    )  # fmt: skip
    assert code == 0, err
    assert "| strategy | soft_vote |" in out
    config = yaml.safe_load((tmp_path / "streamfuse.yaml").read_text())
    assert config["kafka"]["bootstrap_servers"] == "kafka-1:9092,kafka-2:9092"
