"""Fanning a batch out to the models: each model's failure is isolated and named by kind."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from worker.inference.fanout import Fanout, FanoutResult

N_OUTPUTS = 2


def good(X: np.ndarray) -> np.ndarray:
    s = X.sum(axis=1)
    return np.column_stack([s, -s])


def raising(X: np.ndarray) -> np.ndarray:
    raise RuntimeError("model exploded")


def wrong_shape(X: np.ndarray) -> np.ndarray:
    return np.zeros((X.shape[0], N_OUTPUTS + 1))


def too_few_rows(X: np.ndarray) -> np.ndarray:
    return np.zeros((X.shape[0] - 1, N_OUTPUTS))


def not_an_array(X: np.ndarray) -> np.ndarray:
    return good(X).tolist()  # type: ignore[return-value]


def with_nan(X: np.ndarray) -> np.ndarray:
    out = good(X)
    out[1, 0] = np.nan
    return out


def with_inf(X: np.ndarray) -> np.ndarray:
    out = good(X)
    out[0, 1] = np.inf
    return out


def strings(X: np.ndarray) -> np.ndarray:
    return np.full((X.shape[0], N_OUTPUTS), "high", dtype=object)


class Blocker:
    """A model that blocks until released, counting its calls."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, X: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.release.wait()
        return good(X)


@pytest.fixture
def X(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(4, 3))


@pytest.fixture
def fanout_factory() -> Iterator[Callable[..., Fanout]]:
    made: list[Fanout] = []

    def make(names: list[str], timeout_s: float = 30.0) -> Fanout:
        fanout = Fanout(names, timeout_s)
        made.append(fanout)
        return fanout

    yield make
    for fanout in made:
        fanout.close()


@pytest.fixture
def blocker() -> Iterator[Blocker]:
    b = Blocker()
    yield b
    b.release.set()  # let the model thread finish


def assert_only_good_rows(result: FanoutResult, X: np.ndarray, good_models: list[int]) -> None:
    for m in range(result.P.shape[0]):
        if m in good_models:
            np.testing.assert_array_equal(result.P[m], good(X))
        else:
            assert np.isnan(result.P[m]).all()
    assert result.available.tolist() == [m in good_models for m in range(result.P.shape[0])]


def test_every_model_answers(fanout_factory: Callable[..., Fanout], X: np.ndarray) -> None:
    result = fanout_factory(["a", "b"]).predict([good, good], X, N_OUTPUTS)
    assert result.P.shape == (2, 4, N_OUTPUTS)
    assert_only_good_rows(result, X, [0, 1])
    assert result.failures == []
    assert (result.seconds >= 0).all()


@pytest.mark.parametrize(
    ("bad", "kind"),
    [
        (raising, "exception"),
        (wrong_shape, "shape"),
        (too_few_rows, "shape"),
        (not_an_array, "shape"),
        (with_nan, "nonfinite"),
        (with_inf, "nonfinite"),
    ],
)
def test_a_failing_model_is_left_out(
    fanout_factory: Callable[..., Fanout],
    X: np.ndarray,
    bad: Callable[[np.ndarray], np.ndarray],
    kind: str,
) -> None:
    result = fanout_factory(["ok", "bad", "ok2"]).predict([good, bad, good], X, N_OUTPUTS)
    assert_only_good_rows(result, X, [0, 2])
    assert [(f.model, f.kind) for f in result.failures] == [("bad", kind)]
    assert result.failures[0].message


def test_exception_message_names_the_error(
    fanout_factory: Callable[..., Fanout], X: np.ndarray
) -> None:
    result = fanout_factory(["bad"]).predict([raising], X, N_OUTPUTS)
    assert "RuntimeError" in result.failures[0].message
    assert "model exploded" in result.failures[0].message


def test_a_model_returning_non_numbers_is_left_out(
    fanout_factory: Callable[..., Fanout], X: np.ndarray
) -> None:
    result = fanout_factory(["ok", "bad"]).predict([good, strings], X, N_OUTPUTS)
    assert_only_good_rows(result, X, [0])
    assert [f.model for f in result.failures] == ["bad"]


def test_slow_model_times_out_and_is_then_busy(
    fanout_factory: Callable[..., Fanout], X: np.ndarray, blocker: Blocker
) -> None:
    fanout = fanout_factory(["ok", "slow"], timeout_s=0.5)
    first = fanout.predict([good, blocker], X, N_OUTPUTS)
    assert_only_good_rows(first, X, [0])
    assert [(f.model, f.kind) for f in first.failures] == [("slow", "timeout")]

    second = fanout.predict([good, blocker], X, N_OUTPUTS)
    assert_only_good_rows(second, X, [0])
    assert [(f.model, f.kind) for f in second.failures] == [("slow", "busy")]
    assert blocker.calls == 1  # skipped, not queued behind the stuck call


def test_busy_model_comes_back_once_it_finishes(
    fanout_factory: Callable[..., Fanout], X: np.ndarray, blocker: Blocker
) -> None:
    fanout = fanout_factory(["slow"], timeout_s=0.5)
    assert fanout.predict([blocker], X, N_OUTPUTS).failures[0].kind == "timeout"
    blocker.release.set()
    pending = fanout._pending[0]
    assert pending is not None
    pending.result(timeout=30)  # the stuck call ends
    result = fanout.predict([blocker], X, N_OUTPUTS)
    assert result.failures == []
    assert_only_good_rows(result, X, [0])
    assert blocker.calls == 2


def test_failures_do_not_leak_into_the_next_batch(
    fanout_factory: Callable[..., Fanout], X: np.ndarray
) -> None:
    fanout = fanout_factory(["a", "b"])
    assert fanout.predict([good, raising], X, N_OUTPUTS).failures
    result = fanout.predict([good, good], X, N_OUTPUTS)
    assert result.failures == []
    assert_only_good_rows(result, X, [0, 1])


def test_each_models_thread_is_started_and_initialised_before_the_first_deadline() -> None:
    fanout = Fanout(["early"], 0.5, threads_per_model=1)
    try:
        names = [t.name for t in threading.enumerate()]
        assert any(n.startswith("model-early") for n in names), names
    finally:
        fanout.close()


def test_warm_runs_each_model_on_the_thread_that_serves_it_and_reports_what_it_took(
    fanout_factory: Callable[..., Fanout], X: np.ndarray
) -> None:
    seen: list[tuple[str, int]] = []

    def recording(rows: np.ndarray) -> np.ndarray:
        seen.append((threading.current_thread().name, len(rows)))
        return good(rows)

    fanout = fanout_factory(["rec", "bad"])
    took = fanout.warm([recording, raising], [X[:1], X])
    assert isinstance(took[0], float) and took[0] >= 0
    assert isinstance(took[1], RuntimeError) and "exploded" in str(took[1])
    assert [n for _, n in seen] == [1, len(X)]
    fanout.predict([recording, good], X, N_OUTPUTS)
    assert len({name for name, _ in seen}) == 1  # warmed where it then serves


def test_a_model_still_warming_after_the_bound_is_busy_for_the_first_batch(
    fanout_factory: Callable[..., Fanout], X: np.ndarray, blocker: Blocker
) -> None:
    fanout = fanout_factory(["ok", "slow"], timeout_s=0.5)
    took = fanout.warm([good, blocker], [X], bound_s=0.2)
    assert isinstance(took[0], float)
    assert isinstance(took[1], TimeoutError)
    first = fanout.predict([good, blocker], X, N_OUTPUTS)
    assert [(f.model, f.kind) for f in first.failures] == [("slow", "busy")]
    assert blocker.calls == 1
