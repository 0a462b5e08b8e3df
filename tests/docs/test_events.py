"""``docs/events.md``: its examples are what the decoder accepts, the encoder writes, the label
join reads and the dead-letter stages say, so the page cannot drift from the code.

Each example in the page follows a ``<!-- example: NAME -->`` line; the cases below give the
inputs behind each one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from combiners import Explanation
from worker.accuracy.labels import LabelJoiner
from worker.batch.decode import Schema, decode_batch
from worker.batch.encode import encode_predictions
from worker.batch.layout import OutputLayout
from worker.batch.records import dead_letter, source_of
from worker.config import LabelsSettings
from worker.metrics import DEAD_LETTER_STAGES, Metrics

PAGE = Path(__file__).resolve().parents[2] / "docs" / "events.md"
EXAMPLE = re.compile(r"<!-- example: ([\w-]+) -->\s*```(?:json|text)?\n(.*?)```", re.S)

CLASSES = ["setosa", "versicolor", "virginica"]
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SCHEMA = Schema(4, FEATURES)
MODELS = ["rf", "hgb", "mlp"]
VERSIONS = [3, 1, 2]
IRIS = OutputLayout.from_manifest({"task": "classification", "classes": CLASSES}, 3)
MULTITASK = OutputLayout.from_manifest(
    {
        "task": "multitask",
        "tasks": [
            {"name": "species", "type": "classification", "n_outputs": 3, "classes": CLASSES},
            {"name": "petal_width", "type": "regression", "n_outputs": 1},
        ],
    },
    4,
)
# One event (evt-42): each model's scores, and soft_vote's (their mean).
P = np.array([[[0.1, 0.8, 0.1]], [[0.0, 0.9, 0.1]], [[0.2, 0.7, 0.1]]])
COMBINED = np.array([[0.1, 0.8, 0.1]])
SHADOWS = {"hard_vote": np.array([[0.0, 1.0, 0.0]])}
ALL = np.ones(3, dtype=bool)


def examples() -> dict[str, str]:
    found = EXAMPLE.findall(PAGE.read_text(encoding="utf-8"))
    names = [name for name, _ in found]
    assert len(set(names)) == len(names), f"an example name repeats in docs/events.md: {names}"
    return dict(found)


def compact(doc: dict[str, Any]) -> str:
    """``doc`` as the page shows it: a key per line, nested objects an entry per line."""
    lines = []
    for i, (key, value) in enumerate(doc.items()):
        comma = "," if i < len(doc) - 1 else ""
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            inner = [f'    "{k}": {json.dumps(v)}' for k, v in value.items()]
            lines.append(f'  "{key}": {{\n' + ",\n".join(inner) + f"\n  }}{comma}")
        else:
            lines.append(f'  "{key}": {json.dumps(value)}{comma}')
    return "{\n" + "\n".join(lines) + "\n}\n"


def encode(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "ids": ["evt-42"],
        "layout": IRIS,
        "strategy": "soft_vote",
        "combined": COMBINED,
        "model_names": MODELS,
        "model_versions": VERSIONS,
        "P": P,
        "available": ALL,
        "failure_kinds": {},
        "shadows": SHADOWS,
        "latency_ms": 4.2,
    }
    args.update(overrides)
    [value] = encode_predictions(**args)
    doc: dict[str, Any] = json.loads(value)
    return doc


EXPLANATION = Explanation(  # soft_vote with weights [2, 1, 1]: w_i * P_i / 4
    contributions=np.array([[[0.05, 0.4, 0.05]], [[0.0, 0.225, 0.025]], [[0.05, 0.175, 0.025]]]),
    base=np.zeros((1, 3)),
)
MT_P = np.array([[[0.1, 0.8, 0.1, 1.2]], [[0.0, 0.9, 0.1, 1.4]], [[0.2, 0.7, 0.1, 1.3]]])
OUTPUTS: dict[str, Callable[[], dict[str, Any]]] = {
    "output": lambda: encode(),
    "output-degraded": lambda: encode(
        P=np.where(np.arange(3)[:, None, None] == 2, np.nan, P),
        available=np.array([True, True, False]),
        failure_kinds={"mlp": "timeout"},
        combined=np.array([[0.05, 0.85, 0.1]]),
        shadows={},
    ),
    "output-scores-by-class": lambda: encode(scores_by_class=True, shadows={}),
    "output-explain": lambda: encode(explanation=EXPLANATION, shadows={}),
    "output-regression": lambda: encode(
        layout=OutputLayout.from_manifest({"task": "regression"}, 1),
        strategy="weighted_average",
        P=np.array([[[212.5]], [[198.0]], [[205.25]]]),
        combined=np.array([[205.25]]),
        shadows={},
    ),
    "output-multitask": lambda: encode(
        layout=MULTITASK, P=MT_P, combined=np.array([[0.1, 0.8, 0.1, 1.3]]), shadows={}
    ),
}


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_output_example_is_what_the_encoder_writes(name: str) -> None:
    real = OUTPUTS[name]()
    written = examples().get(name)
    assert written is not None, f"docs/events.md lacks the example {name}; it is:\n{compact(real)}"
    # Key order too: the page shows the fields in the order a consumer reads them.
    assert json.dumps(json.loads(written)) == json.dumps(real), (
        f"docs/events.md's example {name} is not what the encoder writes; it writes:\n"
        + compact(real)
    )


def test_every_output_example_is_checked() -> None:
    unchecked = {n for n in examples() if n.startswith("output")} - set(OUTPUTS)
    assert not unchecked, f"examples in docs/events.md no test checks: {sorted(unchecked)}"


@pytest.mark.parametrize(
    ("name", "features"),
    [
        ("input", [5.9, 3.0, 4.2, 1.5]),
        ("input-named", [5.9, 3.0, 4.2, 1.5]),
    ],
)
def test_input_examples_decode(name: str, features: list[float]) -> None:
    value = examples()[name].encode()
    decoded = decode_batch([value], SCHEMA)
    assert decoded.rejections == []
    assert decoded.ids == [json.loads(value)["id"]]
    np.testing.assert_array_equal(decoded.X, [features])


def joiner(layout: OutputLayout) -> LabelJoiner:
    return LabelJoiner(
        layout, MODELS, ["soft_vote"], LabelsSettings(), Metrics(CollectorRegistry())
    )


@pytest.mark.parametrize(
    ("name", "layout", "P", "y"),
    [
        ("label", IRIS, P, [1]),  # versicolor: the class of column 1
        ("label-multitask", MULTITASK, MT_P, [[1, 1.3]]),
    ],
)
def test_label_examples_join(name: str, layout: OutputLayout, P: np.ndarray, y: Any) -> None:
    join = joiner(layout)
    join.add_predictions(["evt-42"], P, ALL, {"soft_vote": P.mean(axis=0)})
    joined = join.add_labels([examples()[name].encode()])
    assert joined is not None and joined.ids == ["evt-42"]
    np.testing.assert_array_equal(joined.y, y)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None = None


def dead_letter_rows() -> list[tuple[str, str, str]]:
    """``(value, stage, reason)`` of the page's table of decode and validate reasons."""
    text = PAGE.read_text(encoding="utf-8")
    table = text.split("<!-- reasons -->", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.strip().splitlines()[2:]:
        value, stage, reason = (c.strip() for c in line.strip("|").split(" | "))
        rows.append((value.strip("`"), stage.strip("`"), reason.strip("`")))
    return rows


def test_dead_letter_reasons_are_what_decode_says() -> None:
    rows = dead_letter_rows()
    assert len(rows) >= 5
    for value, stage, reason in rows:
        [rejection] = decode_batch([value.encode()], SCHEMA).rejections
        assert (rejection.stage, rejection.reason) == (stage, reason), value


def test_dead_letter_headers_and_stages() -> None:
    text = PAGE.read_text(encoding="utf-8")
    record = Record("features", 0, 1234, b"k", b"x" * 2000)
    out, _ = dead_letter(record, "validate", "why", max_bytes=1024)
    for header, _ in out.headers:
        assert f"`{header}`" in text, f"docs/events.md does not name the header {header}"
    headers = dict(out.headers)
    assert headers["streamfuse.source"] == source_of(record) == b"features:0:1234"
    assert headers["streamfuse.truncated"] == b"2000" and len(out.value) == 1024
    assert "`features:0:1234`" in text
    for stage in DEAD_LETTER_STAGES:
        assert f"| `{stage}` |" in text, f"docs/events.md lacks the stage {stage}"


def test_every_output_field_is_in_the_fields_table() -> None:
    text = PAGE.read_text(encoding="utf-8")
    fields = {key for make in OUTPUTS.values() for key in make()}
    missing = sorted(f for f in fields if f"| `{f}` |" not in text)
    assert not missing, f"docs/events.md's table of output fields lacks {missing}"
