"""The user's own data: CSV or Parquet files with a header, as features, targets and events.

CSV needs nothing beyond the standard library; Parquet is read with pyarrow (the ``parquet``
extra). Every problem stops with a :class:`DataFileError` (exit 2) naming the file and the
column: a missing target, a non-numeric feature column (encode it as numbers first), an
empty cell or NaN, a single class, a header that does not name the models' features.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from worker.errors import ConfigError

__all__ = [
    "DataFileError",
    "Labelled",
    "Table",
    "class_index",
    "feature_columns",
    "read_labelled",
    "read_table",
]

#: An integer-valued numeric target with at most this many distinct values is taken for
#: classes when no task is given.
MAX_INFERRED_CLASSES = 20


class DataFileError(ConfigError):
    """A data file cannot be used; the message names the file and, where known, the column."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.key = str(path)
        self.problem = problem
        Exception.__init__(self, f"{path}: {problem}")


@dataclass
class Table:
    """Columns of a file, in header order, as Python values (CSV: strings)."""

    path: Path
    columns: list[str]
    values: dict[str, list[Any]]

    @property
    def n_rows(self) -> int:
        return len(self.values[self.columns[0]]) if self.columns else 0

    def numeric(self, column: str) -> np.ndarray:
        """``column`` as float64; refuses text and empty cells, naming the column and row."""
        out = np.empty(self.n_rows, dtype=np.float64)
        for i, value in enumerate(self.values[column]):
            number = _number(value)
            if number is None:
                raise DataFileError(
                    self.path,
                    f"column {column!r} is not numeric (row {i + 2}: {value!r}); encode it as "
                    "numbers first (one-hot or ordinal codes), or leave it out of the file",
                )
            if math.isnan(number) or math.isinf(number):
                raise DataFileError(
                    self.path,
                    f"column {column!r} has an empty, NaN or infinite value at row {i + 2}",
                )
            out[i] = number
        return out


def _number(value: Any) -> float | None:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    text = str(value).strip()
    if text == "" or text.lower() in ("nan", "na", "null"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def read_table(path: str | Path) -> Table:
    """Read a ``.csv`` (header row, comma-separated) or ``.parquet`` file."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, "no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise DataFileError(
                path, "reading Parquet needs pyarrow: pip install 'streamfuse[parquet]'"
            ) from exc
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow's ArrowInvalid and OSError
            raise DataFileError(path, f"not a readable Parquet file ({exc})") from exc
        columns = [str(c) for c in table.column_names]
        values = {str(c): table.column(c).to_pylist() for c in table.column_names}
        return _checked(path, columns, values)
    if path.suffix.lower() not in (".csv", ".txt"):
        raise DataFileError(path, "expected a .csv or .parquet file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if r]
    if not rows:
        raise DataFileError(path, "the file is empty (a header row is needed)")
    columns = [c.strip() for c in rows[0]]
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != len(columns):
            raise DataFileError(path, f"row {n} has {len(row)} fields, the header {len(columns)}")
    values = {c: [row[j] for row in rows[1:]] for j, c in enumerate(columns)}
    return _checked(path, columns, values)


def _checked(path: Path, columns: list[str], values: dict[str, list[Any]]) -> Table:
    if len(set(columns)) != len(columns) or "" in columns:
        raise DataFileError(path, "the header must name every column once")
    table = Table(path, columns, values)
    if table.n_rows == 0:
        raise DataFileError(path, "no rows below the header")
    return table


@dataclass
class Labelled:
    """Features ``X`` (n, n_features) float64, raw targets ``y`` and what they are."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    task: str
    classes: tuple[Any, ...] | None


def feature_columns(
    table: Table,
    exclude: Sequence[str],
    names: Sequence[str] | None,
    n_features: int | None,
    *,
    others: bool = False,
) -> list[str]:
    """The columns holding the models' features, in the models' order.

    With ``names`` (the models' feature names) columns are matched by name: each name must
    be a column and, unless ``others`` is allowed, each column but ``exclude`` (the target)
    must be a name; otherwise the file is refused, listing the missing and the unknown
    columns. Without names, every column but ``exclude`` is taken in file order, when their
    count is ``n_features`` (said once on stderr: nothing checks that the order is right).
    """
    if names:
        missing = [n for n in names if n not in table.values]
        known = set(names) | set(exclude)
        unknown = [] if others else [c for c in table.columns if c not in known]
        if missing or unknown:
            raise DataFileError(table.path, _mismatch(len(names), missing, unknown, exclude))
        return list(names)
    cols = [c for c in table.columns if c not in exclude]
    if n_features is not None and len(cols) != n_features:
        raise DataFileError(
            table.path,
            f"the models take {n_features} features; the file has {len(cols)} columns"
            + (f" besides {', '.join(map(repr, exclude))}" if exclude else ""),
        )
    if n_features is not None:
        print(
            f"streamfuse: {table.path}: the models have no feature names, so its "
            f"{len(cols)} columns are taken in file order",
            file=sys.stderr,
        )
    return cols


def _mismatch(n_names: int, missing: list[str], unknown: list[str], exclude: Sequence[str]) -> str:
    """Why a header does not fit the models' ``n_names`` names, and what to do."""
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} of the models' names {_listed(missing)}")
    if unknown:
        parts.append(f"{len(unknown)} unknown column(s) {_listed(unknown)}")
    hint = "rename the columns to the models' feature names (streamfuse store show MODEL)"
    if unknown and not missing:
        hint = "leave those columns out" + ("" if exclude else ", or name the label with --target")
    return (
        f"the header does not match the models' {n_names} feature names (columns are "
        f"matched by name): {'; '.join(parts)}; {hint}"
    )


def _listed(names: list[str], most: int = 10) -> str:
    shown = ", ".join(map(repr, names[:most]))
    return f"[{shown}{', ...' if len(names) > most else ''}]"


def read_labelled(
    path: str | Path,
    target: str,
    *,
    task: str | None = None,
    names: Sequence[str] | None = None,
    n_features: int | None = None,
) -> Labelled:
    """Features and target of a file; the task is inferred when not given (text or at most
    20 distinct integers: classification; other numbers: regression)."""
    table = read_table(path)
    if target not in table.values:
        raise DataFileError(
            table.path, f"no target column {target!r} (columns: {', '.join(table.columns)})"
        )
    cols = feature_columns(table, [target], names, n_features)
    if not cols:
        raise DataFileError(table.path, "no feature columns besides the target")
    X = np.column_stack([table.numeric(c) for c in cols])
    raw = table.values[target]
    numbers = [_number(v) for v in raw]
    for i, (value, number) in enumerate(zip(raw, numbers, strict=True)):
        if number is not None and math.isnan(number):
            raise DataFileError(
                table.path, f"target column {target!r} has an empty or NaN value at row {i + 2}"
            )
        del value
    all_numeric = all(n is not None for n in numbers)
    integral = all_numeric and all(float(n).is_integer() for n in numbers)  # type: ignore[arg-type]
    if task is None:
        few = len(set(numbers)) <= MAX_INFERRED_CLASSES
        task = "classification" if not all_numeric or (integral and few) else "regression"
    if task == "regression":
        if not all_numeric:
            table.numeric(target)  # raises, naming the first non-number
        return Labelled(X, np.asarray(numbers, dtype=np.float64), cols, task, None)
    if task != "classification":
        raise DataFileError(
            table.path, f"--task must be classification or regression, not {task!r}"
        )
    if integral:
        y: np.ndarray = np.asarray([int(n) for n in numbers], dtype=np.int64)  # type: ignore[arg-type]
    else:
        y = np.asarray([str(v).strip() for v in raw])
    classes = tuple(c.item() for c in np.unique(y))
    if len(classes) < 2:
        raise DataFileError(
            table.path, f"target column {target!r} has one class only ({classes[0]!r})"
        )
    return Labelled(X, y, cols, task, classes)


def class_index(path: Path | str, classes: Sequence[Any], labels: np.ndarray) -> np.ndarray:
    """Each label's position in ``classes`` (matched by value, ``1.0`` as ``1``)."""
    lookup = {_key(c): i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels.tolist()):
        try:
            out[i] = lookup[_key(label)]
        except KeyError:
            raise DataFileError(
                path,
                f"target value {label!r} (row {i + 2}) is not one of the classes {list(classes)}",
            ) from None
    return out


def _key(value: Any) -> str:
    number = _number(value)
    if number is not None and not math.isnan(number) and float(number).is_integer():
        return str(int(number))
    return str(value).strip()
