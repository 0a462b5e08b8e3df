"""Registry, dotted-path user strategies, persistence formats and the package boundary."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

import combiners
from combiners import (
    STATE_FORMAT,
    BaseCombiner,
    CombinerError,
    InvalidCombinerClassError,
    InvalidParameterError,
    StateError,
    UnknownCombinerError,
    UnknownParameterError,
    available_combiners,
    get_combiner,
    load_state,
    save_state,
)

PACKAGE = Path(combiners.__file__).parent


class MedianCombiner(BaseCombiner):
    """A user strategy named by dotted path (not registered)."""

    def fit(self, P: Any, y: Any, X: Any = None) -> MedianCombiner:
        self._fit_inputs(P, y)
        return self

    def combine(self, P: Any, X: Any = None, available: Any = None) -> np.ndarray:
        P_arr, mask = self._combine_inputs(P, available)
        return np.median(P_arr if mask is None else P_arr[mask], axis=0)


class DuckCombiner:
    """Provides fit/combine without subclassing BaseCombiner."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def fit(self, P: Any, y: Any, X: Any = None) -> DuckCombiner:
        return self

    def combine(self, P: Any, X: Any = None, available: Any = None) -> np.ndarray:
        return np.asarray(P).mean(axis=0) * self.scale


def test_available_combiners_is_sorted_and_complete() -> None:
    names = available_combiners()
    assert names == sorted(names)
    expected = {"weighted_average", "weighted_sum", "soft_vote", "hard_vote", "stacking"}
    assert expected | {"select_best", "hedge", "multitask"} <= set(names)


def test_resolve_registered_and_dotted() -> None:
    assert combiners.resolve("soft_vote") is combiners.SoftVote
    assert combiners.resolve("combiners:Hedge") is combiners.Hedge
    assert combiners.resolve(f"{__name__}:MedianCombiner") is MedianCombiner


def test_user_strategy_by_dotted_path_round_trips(rng: np.random.Generator) -> None:
    P = rng.normal(size=(3, 5, 1))
    comb = get_combiner(f"{__name__}:MedianCombiner").fit(P, np.zeros(5))
    np.testing.assert_allclose(comb.combine(P), np.median(P, axis=0))
    meta, arrays = save_state(comb)
    assert meta["name"] == f"{__name__}:MedianCombiner"
    # Stored state never chooses code: the caller passes the class its config named.
    with pytest.raises(UnknownCombinerError, match="only name registered"):
        load_state(meta, arrays)
    restored = load_state(meta, arrays, trusted=[combiners.resolve(meta["name"])])
    np.testing.assert_array_equal(restored.combine(P), comb.combine(P))


def test_duck_typed_user_strategy(rng: np.random.Generator) -> None:
    P = rng.normal(size=(2, 3, 1))
    comb = get_combiner(f"{__name__}:DuckCombiner", scale=2.0)
    np.testing.assert_allclose(comb.fit(P, None).combine(P), P.mean(axis=0) * 2)
    with pytest.raises(StateError):
        save_state(comb)


def test_save_state_meta_format(rng: np.random.Generator) -> None:
    P = rng.dirichlet(np.ones(3), size=(2, 30))
    y = np.arange(30) % 3
    comb = get_combiner("select_best", k=1, window=10).fit(P, y)
    meta, arrays = save_state(comb)
    assert set(meta) == {"format", "name", "params", "fitted"}
    assert meta["format"] == STATE_FORMAT
    assert meta["name"] == "select_best"
    assert meta["params"] == {"k": 1, "metric": None, "window": 10, "task": None}
    assert meta["fitted"]["metric_"] == "accuracy"
    assert meta["fitted"]["n_models_"] == 2
    json.dumps(meta, allow_nan=False)
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    assert arrays["buffer_"].shape == (10, 2)


def test_weights_given_as_array_are_saved_as_json(rng: np.random.Generator) -> None:
    P = rng.dirichlet(np.ones(2), size=(2, 4))
    comb = get_combiner("soft_vote", weights=np.array([1.0, 2.0])).fit(P, [0, 1, 0, 1])
    meta, arrays = save_state(comb)
    assert meta["params"]["weights"] == [1.0, 2.0]
    restored = load_state(json.loads(json.dumps(meta)), load_tensors(save_tensors(arrays)))
    np.testing.assert_array_equal(restored.combine(P), comb.combine(P))


def test_multitask_state_holds_numpy_parameters(rng: np.random.Generator) -> None:
    P = rng.dirichlet(np.ones(2), size=(2, 20))
    comb = get_combiner("multitask", epochs=5, hidden=4).fit(P, np.arange(20) % 2)
    meta, arrays = save_state(comb)
    assert meta["fitted"]["tasks_"] == [
        {"name": "default", "type": "classification", "n_outputs": 2}
    ]
    assert arrays["trunk_weight_"].shape == (4, 4)
    assert arrays["heads_weight_"].shape == (2, 4)


def test_combiners_never_import_worker_or_model_store() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in {"worker", "model_store"}, (path, module)


def test_import_is_light() -> None:
    """``import combiners`` loads neither torch nor scikit-learn (the worker starts fast)."""
    code = "import sys, combiners; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    )
    assert result.stdout.split() == ["False", "False"]


# -- hostile stored state and config names (issue 18, findings 2, 7 and 8) ----------------


@pytest.fixture
def planted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module on sys.path whose import touches a marker (a .py dropped beside a store)."""
    marker = tmp_path / "imported"
    (tmp_path / "sf_planted.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nclass Evil:\n"
        "    def fit(self, P, y, X=None): return self\n"
        "    def combine(self, P, X=None, available=None): return P[0]\n"
    )
    (tmp_path / "sf_exits.py").write_text("raise SystemExit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    for module in ("sf_planted", "sf_exits"):
        sys.modules.pop(module, None)


def _soft_vote_state(rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    P = rng.dirichlet(np.ones(2), size=(2, 4))
    return save_state(get_combiner("soft_vote").fit(P, [0, 1, 0, 1]))


@pytest.mark.parametrize(
    "name", ["sf_planted:Evil", "combiners:Hedge", "combiners._voting:SoftVote"]
)
def test_stored_dotted_name_imports_nothing(
    rng: np.random.Generator, planted_module: Path, name: str
) -> None:
    meta, arrays = _soft_vote_state(rng)
    with pytest.raises(UnknownCombinerError, match="only name registered"):
        load_state({**meta, "name": name}, arrays)
    assert not planted_module.exists()
    assert "sf_planted" not in sys.modules


@pytest.mark.parametrize("name", [None, 3, ["soft_vote"], "soft_vote\n", "Soft_Vote", ""])
def test_stored_name_must_be_registered_exactly(rng: np.random.Generator, name: object) -> None:
    meta, arrays = _soft_vote_state(rng)
    with pytest.raises(UnknownCombinerError):
        load_state({**meta, "name": name}, arrays)


def test_stored_params_are_the_class_parameters(rng: np.random.Generator) -> None:
    meta, arrays = _soft_vote_state(rng)
    with pytest.raises(UnknownParameterError, match="'evil'"):
        load_state({**meta, "params": {"evil": 1}}, arrays)
    with pytest.raises(InvalidParameterError):
        load_state({**meta, "params": {"weights": [1, -5]}}, arrays)
    for bad in ({**meta, "params": [1]}, {**meta, "fitted": "x"}, ["not", "a", "dict"]):
        with pytest.raises(StateError):
            load_state(bad, arrays)  # type: ignore[arg-type]
    with pytest.raises(StateError):
        load_state(meta, {"weights_": np.array([object()], dtype=object)})


def test_stored_values_of_the_wrong_type_are_combiner_errors(rng: np.random.Generator) -> None:
    P = rng.dirichlet(np.ones(2), size=(2, 20))
    meta, arrays = save_state(
        get_combiner("multitask", epochs=2, hidden=3).fit(P, np.arange(20) % 2)
    )
    for params in ({"hidden": "wide"}, {"tasks": 5}, {"tasks": [{"name": {}}]}):
        with pytest.raises(CombinerError):
            load_state({**meta, "params": params}, arrays)


@pytest.mark.parametrize(
    "name",
    ["..x:y", "x..y:Z", ":Cls", "mod:", "a b:C", "mod:Cls\n", "os.path:join()", "a:b:c"],
)
def test_bad_dotted_forms_are_clean_errors(name: str) -> None:
    with pytest.raises(UnknownCombinerError, match=r"form 'package\.module:Class'"):
        combiners.resolve(name)


def test_dotted_path_checks_before_and_after_import(planted_module: Path) -> None:
    with pytest.raises(UnknownCombinerError, match="form"):
        combiners.resolve("sf_planted.__main__:Evil")
    with pytest.raises(UnknownCombinerError, match="exits"):
        combiners.resolve("sf_exits:Anything")
    with pytest.raises(UnknownCombinerError, match="ModuleNotFoundError"):
        combiners.resolve("no_such_module_sf:Cls")
    with pytest.raises(InvalidCombinerClassError):
        combiners.resolve("os:getcwd")
    with pytest.raises(InvalidCombinerClassError):
        combiners.resolve("os:sep")
    assert not planted_module.exists()
    assert combiners.resolve("sf_planted:Evil").__name__ == "Evil"  # config: trusted
    assert planted_module.exists()
