"""Write the key tables of ``docs/configuration.md`` from the settings model.

Run from the repository root after adding, removing or changing a setting::

    python -m tests.support.config_doc

It rewrites what lies between the page's ``BEGIN KEYS`` and ``END KEYS`` markers: one table per
section, each key's type, default and allowed values read from the pydantic models of
``worker.config``. The meaning of a key is the field's ``description`` when it has one, else the
one already written in its row; a new key gets an empty meaning to fill in, and the page's test
(``tests/docs/test_configuration.py``) fails until it has one. Text outside the markers, and each
section's paragraph under its heading, are kept as written.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from model_store import StoreLimits
from worker.config import Settings

__all__ = ["COMMAND", "PAGE", "Key", "keys", "problems", "render"]

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "configuration.md"
COMMAND = "python -m tests.support.config_doc"
BEGIN = "<!-- BEGIN KEYS: written by python -m tests.support.config_doc; edit meanings only -->"
END = "<!-- END KEYS -->"
HEADER = "| key | type | default | allowed | meaning |\n|---|---|---|---|---|"
_ROW = re.compile(r"^\| `(?P<key>[^`]+)` \|(?P<rest>.*)\|\s*$")


@dataclass(frozen=True)
class Key:
    """One documented key: where it lives and what the model says of it."""

    section: str  # the heading it is listed under: "kafka", "strategy.promote", "models[]"
    key: str  # the full dotted path: "kafka.group_id", "models[].name"
    type: str
    default: str
    allowed: str
    description: str  # the field's own description, "" when it has none

    def cells(self, meaning: str) -> str:
        return f"| `{self.key}` | {self.type} | {self.default} | {self.allowed} | {meaning} |"


def keys(model: type[BaseModel] = Settings) -> list[tuple[str, str, list[Key]]]:
    """``(section, intro, keys)`` for every section, in the model's order.

    ``intro`` is the section model's docstring (first paragraph), or "" when it has none.
    """
    sections: list[tuple[str, str, list[Key]]] = []
    seen: dict[type[BaseModel], str] = {}
    for name, field in model.model_fields.items():
        inner, _ = _section_model(field.annotation)
        if inner is None or inner in seen:  # a plain key, or a list of a section shown before
            kind = _type(field.annotation) if inner is None else f"list of `{seen[inner]}` entries"
            row = Key(name, name, kind, _default(field), "", field.description or "")
            sections.append((name, "", [row]))
            continue
        sections.extend(_sections(name, field.annotation, seen))
    return sections


def _sections(
    path: str, annotation: Any, seen: dict[type[BaseModel], str]
) -> Iterator[tuple[str, str, list[Key]]]:
    inner, listed = _section_model(annotation)
    if inner is None:
        return
    path = path + "[]" if listed else path
    if inner in seen:  # shadow_strategies: the same keys as strategy
        return
    seen[inner] = path
    rows: list[Key] = []
    nested: list[tuple[str, Any]] = []
    for name, field in inner.model_fields.items():
        key = f"{path}.{name}"
        sub, sub_listed = _section_model(field.annotation)
        if sub is not None and sub in seen:
            kind = f"list of `{seen[sub]}` entries" if sub_listed else f"`{seen[sub]}` section"
            rows.append(Key(path, key, kind, _default(field), "", field.description or ""))
            continue
        if sub is not None:
            nested.append((key, field.annotation))
            kind = "list" if sub_listed else "section"
            rows.append(
                Key(path, key, f"{kind}: [below](#{_anchor(key)})", _default(field), "", "")
            )
            continue
        rows.append(
            Key(
                path,
                key,
                _type(field.annotation),
                _default(field),
                _allowed(field.annotation, field.metadata),
                field.description or "",
            )
        )
        if inner.__name__ == "StoreSettings" and name == "limits":
            rows.extend(_store_limits(key))
    yield path, _intro(inner), rows
    for key, annotation in nested:
        yield from _sections(key, annotation, seen)


def _section_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The settings model inside ``annotation`` (``X``, ``X | None``, ``tuple[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not ...]
    if len(args) == 1 and (origin in (typing.Union, types.UnionType, tuple)):
        inner, _ = _section_model(args[0])
        return inner, origin is tuple
    return None, False


def _store_limits(key: str) -> list[Key]:
    return [
        Key(
            "store",
            f"{key}.{f.name}",
            "int",
            _json(f.default),
            "≥ 1",
            "",
        )
        for f in dataclasses.fields(StoreLimits)
    ]


def _intro(model: type[BaseModel]) -> str:
    doc = model.__doc__ or ""
    if not doc or doc == BaseModel.__doc__ or model.__doc__ == model.__mro__[1].__doc__:
        return ""
    first = doc.strip().split("\n\n")[0]
    return re.sub(r"\s+", " ", first).replace("``", "`")


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return type(args[0]).__name__
    if origin in (typing.Union, types.UnionType):
        parts = [_type(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is dict:
        value = args[1] if len(args) == 2 else Any
        return "mapping" if value is Any else f"mapping of {_type(value)}"
    if origin in (tuple, list):
        return f"list of {_type(args[0])}"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _allowed(annotation: Any, metadata: list[Any]) -> str:
    if typing.get_origin(annotation) is Literal:
        return ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    low = high = ""
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            low = f"≥ {m.ge}"
        elif isinstance(m, annotated_types.Gt):
            low = f"> {m.gt}"
        elif isinstance(m, annotated_types.Le):
            high = f"≤ {m.le}"
        elif isinstance(m, annotated_types.Lt):
            high = f"< {m.lt}"
    if low.startswith("≥") and high.startswith("≤"):
        return f"{low[2:]} to {high[2:]}"
    return ", ".join(p for p in (low, high) if p)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return _json(field.default_factory())
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, BaseModel):
        return "—"
    return _json(value)


def _json(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    return f"`{json.dumps(value)}`"


def _anchor(key: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "", key.lower().replace(" ", "-"))


def _read(page: str) -> tuple[str, str, str, dict[str, str], dict[str, str]]:
    """``(head, body, tail, meanings by key, intros by section)`` of the page's text."""
    if BEGIN not in page or END not in page:
        raise ValueError(f"the page lacks the markers {BEGIN!r} and {END!r}")
    head, rest = page.split(BEGIN, 1)
    body, tail = rest.split(END, 1)
    meanings: dict[str, str] = {}
    intros: dict[str, str] = {}
    section = ""
    for line in body.splitlines():
        if line.startswith("## "):
            section = line[3:].strip().strip("`")
            continue
        match = _ROW.match(line)
        if match:
            meanings[match["key"]] = _cells(match["rest"])[-1]
        elif section and line.strip() and not line.startswith("|"):
            intros[section] = (intros.get(section, "") + " " + line.strip()).strip()
    return head, body, tail, meanings, intros


def _cells(rest: str) -> list[str]:
    # Cells split on "|" not escaped as "\|" (a meaning may hold an escaped one).
    return [c.strip() for c in re.split(r"(?<!\\)\|", rest)]


def render(page: str, model: type[BaseModel] = Settings) -> str:
    """The page with its key tables written from ``model``."""
    head, _, tail, meanings, intros = _read(page)
    parts = [BEGIN, ""]
    for section, intro, rows in keys(model):
        parts += [f"## `{section}`", ""]
        text = intro or intros.get(section)  # the section model's docstring, else the page's
        if text:
            parts += [text, ""]
        parts.append(HEADER)
        parts += [k.cells(k.description or meanings.get(k.key, "")) for k in rows]
        parts.append("")
    parts.append(END)
    return head + "\n".join(parts) + tail


def problems(page: str, model: type[BaseModel] = Settings) -> list[str]:
    """What the page gets wrong about ``model``, one sentence each; empty when it is right."""
    _, body, _, meanings, _ = _read(page)
    rows = {k.key: k for _, _, ks in keys(model) for k in ks}
    written = {m["key"]: m["rest"] for m in map(_ROW.match, body.splitlines()) if m}
    found = []
    for key, k in rows.items():
        if key not in written:
            found.append(f"{key} is not in the page")
            continue
        cells = _cells(written[key])
        if cells[:3] != [k.type, k.default, k.allowed]:
            found.append(
                f"{key} reads type/default/allowed {cells[:3]}, the settings model says "
                f"{[k.type, k.default, k.allowed]}"
            )
        if not (k.description or meanings.get(key)):
            found.append(f"{key} has no meaning: write one in its row's last cell")
    found += [f"{key} is in the page but not a setting" for key in written if key not in rows]
    if not found and render(page, model) != page:
        found.append("the key tables are not as the generator writes them (order, headings)")
    return found


def main() -> int:
    page = PAGE.read_text(encoding="utf-8")
    new = render(page)
    if new != page:
        PAGE.write_text(new, encoding="utf-8")
    missing = [p for p in problems(new) if "has no meaning" in p]
    print(f"{PAGE.relative_to(ROOT)}: {'rewritten' if new != page else 'unchanged'}")
    for line in missing:
        print("  " + line)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
