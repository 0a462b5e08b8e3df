"""Dependencies point one way: ``worker`` uses ``combiners`` and ``model_store``; those two never
import ``worker`` and never each other (STYLE.md, "Layout shows the architecture")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("combiners", "model_store", "worker")
FORBIDDEN = {
    "combiners": {"worker", "model_store"},
    "model_store": {"worker", "combiners"},
}
IMPORT_CALLS = {"import_module", "__import__", "import_object"}


def imported_packages(source: str, module: str) -> set[str]:
    """Top-level names ``module`` (dotted, e.g. ``combiners._voting``) imports, anywhere in the
    file: module level, inside functions, relative imports and ``importlib`` calls on literals."""
    tree = ast.parse(source)
    package_parts = module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add((node.module or "").split(".")[0])
            else:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                target = [*base, *(node.module or "").split(".")] if node.module else base
                if not base:  # climbed above the top-level package
                    names = [node.module] if node.module else [a.name for a in node.names]
                    found.update(n.split(".")[0] for n in names)
                else:
                    found.add(target[0])
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in IMPORT_CALLS and node.args and isinstance(node.args[0], ast.Constant):
                value = node.args[0].value
                if isinstance(value, str):
                    found.add(value.split(":")[0].split(".")[0])
    return found


def modules(package: str) -> list[tuple[str, Path]]:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    return [
        (".".join(path.relative_to(ROOT).with_suffix("").parts), path)
        for path in files
        if ".venv" not in path.parts
    ]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_never_imports_the_others(package: str) -> None:
    offenders = []
    for module, path in modules(package):
        bad = imported_packages(path.read_text(encoding="utf-8"), module) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert offenders == []


def test_worker_composes_both_packages() -> None:
    used: set[str] = set()
    for module, path in modules("worker"):
        used |= imported_packages(path.read_text(encoding="utf-8"), module)
    assert {"combiners", "model_store"} <= used


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import worker.config", "combiners._x", {"worker"}),
        ("from worker import cli", "combiners._x", {"worker"}),
        ("def f():\n    from model_store import ModelStore", "combiners._x", {"model_store"}),
        ("from .. import worker", "combiners._x", {"worker"}),
        ("from ..worker import x", "combiners._x", {"worker"}),
        ("from ._voting import SoftVote", "combiners._x", {"combiners"}),
        ("from . import errors", "model_store.sub._x", {"model_store"}),
        (
            "import importlib\nimportlib.import_module('worker.cli')",
            "model_store._x",
            {"importlib", "worker"},
        ),
        ("__import__('combiners')", "model_store._x", {"combiners"}),
    ],
)
def test_the_scan_sees_every_kind_of_import(source: str, module: str, expected: set[str]) -> None:
    assert imported_packages(source, module) == expected
