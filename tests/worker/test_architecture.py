"""Dependencies point one way: ``worker`` uses ``combiners`` and ``model_store``; those two never
import ``worker`` and never each other (docs/architecture.md, "Packages"). ``benchmarks``
is the top: it may import anything, and nothing of the three installed packages imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("combiners", "model_store", "worker")
TOP = "benchmarks"  # not installed: the wheel could not import it
FORBIDDEN = {
    "combiners": {"worker", "model_store", TOP},
    "model_store": {"worker", "combiners", TOP},
    "worker": {TOP},
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


def test_a_benchmark_import_would_be_caught() -> None:
    source = "def bench():\n    from benchmarks.harness import run_bench\n"
    assert imported_packages(source, "worker.tools.bench") & FORBIDDEN["worker"] == {TOP}


def test_benchmarks_are_not_packaged() -> None:
    """The wheel's packages (pyproject.toml) match none of benchmarks/."""
    import fnmatch
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    names = [m for m, _ in modules(TOP)]
    assert names and set(PACKAGES) <= {p.rstrip("*") for p in include}
    assert [n for n in names if any(fnmatch.fnmatch(n, pat) for pat in include)] == []


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


# -- inside worker/: the layers (docs/architecture.md, "Inside worker/") -------------------------

KAFKA_CLIENTS = {"kafka", "confluent_kafka"}
# Sub-packages of worker/ and the worker modules each may import (besides itself, config/ and
# the top-level errors, metrics and logs modules).
LAYERS: dict[str, set[str]] = {
    "batch": set(),
    "transport": {"batch"},
    "inference": {"batch"},
    "accuracy": {"batch"},
    "drift": set(),
    "delivery": {"batch", "transport"},  # the outgoing records, never the pipeline's types
    "schemas": {"batch"},
    "service": {"batch", "transport", "inference", "accuracy", "drift", "delivery", "schemas"},
}
# worker/schemas/ speaks HTTP to a Schema Registry through confluent-kafka's schema_registry
# package, which needs no Kafka client: only that part of confluent_kafka is allowed there.
REGISTRY_CLIENT = ("confluent_kafka.schema_registry", "confluent_kafka.serialization")
TOP_LEVEL = {"config", "errors", "metrics", "logs", "__init__"}
# The bottom layer, which every other may import: worker/config/ uses only worker.errors (the
# transport checks the Kafka clients' settings; the config builds no client).
BOTTOM: dict[str, set[str]] = {"config": {"errors"}}
LOOP_MODULE = "worker.service.loop"


def _adapter_of(name: str) -> bool:
    """Whether ``name`` is inside an adapter package of worker/transport/."""
    bits = name.split(".")
    return bits[:2] == ["worker", "transport"] and len(bits) > 2 and bits[2] in ADAPTERS


ADAPTERS = {
    p.name for p in (ROOT / "worker" / "transport").iterdir() if (p / "__init__.py").is_file()
}


def imported_modules(source: str, module: str) -> set[str]:
    """Dotted names of every module ``module`` imports (``from a.b import c``: ``a.b.c`` and
    ``a.b``), with relative imports resolved."""
    tree = ast.parse(source)
    package = module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def allowed(layer: str) -> set[str]:
    """What of worker/ the sub-package ``layer`` may import besides itself."""
    return BOTTOM[layer] if layer in BOTTOM else TOP_LEVEL | LAYERS[layer]


def layer_violations(files: dict[str, str]) -> list[str]:
    """Broken import rules among ``files`` (dotted module name to source)."""
    problems = []
    for module, source in sorted(files.items()):
        imported = imported_modules(source, module)
        parts = module.split(".")
        tops = {name.split(".")[0] for name in imported}
        in_tools = parts[:2] == ["worker", "tools"]
        in_adapter = parts[:2] == ["worker", "transport"] and len(parts) > 3
        if parts[:2] == ["worker", "schemas"]:
            imported = {n for n in imported if not n.startswith(REGISTRY_CLIENT)}
            tops = {name.split(".")[0] for name in imported}
        if tops & KAFKA_CLIENTS and not (in_tools or in_adapter):
            problems.append(f"{module} imports a Kafka client ({', '.join(tops & KAFKA_CLIENTS)})")
        if module == LOOP_MODULE:
            adapters = sorted(n for n in imported if _adapter_of(n))
            if adapters:
                problems.append(f"{module} imports a transport adapter ({adapters[0]})")
        if in_tools or module == "worker.cli":
            continue
        seen: set[str] = set()
        for name in sorted(imported, key=len):  # one problem per layer: the shortest name
            bits = name.split(".")
            if len(bits) > 1 and bits[1] in seen:
                continue
            if bits[0] != "worker" or len(bits) < 2:
                continue
            if bits[1] == "tools":
                seen.add(bits[1])
                problems.append(f"{module} imports {name} (only the CLI imports the tools)")
                continue
            if len(parts) < 3 or parts[1] not in LAYERS.keys() | BOTTOM.keys():
                continue  # a top-level module of worker/
            if bits[1] == parts[1] or bits[1] in allowed(parts[1]):
                continue
            seen.add(bits[1])
            if parts[1] in BOTTOM:
                only = ", ".join(sorted(BOTTOM[parts[1]]))
                problems.append(f"{module} imports {name} ({parts[1]}/ is the bottom: only {only})")
            else:
                problems.append(f"{module} imports {name} ({parts[1]}/ may not use {bits[1]}/)")
    return problems


def worker_files() -> dict[str, str]:
    return {module: path.read_text(encoding="utf-8") for module, path in modules("worker")}


def test_worker_layers_hold() -> None:
    assert layer_violations(worker_files()) == []


def test_the_loop_imports_no_kafka_client() -> None:
    source = (ROOT / "worker/service/loop.py").read_text(encoding="utf-8")
    tops = {name.split(".")[0] for name in imported_modules(source, LOOP_MODULE)}
    assert not tops & KAFKA_CLIENTS
    assert "worker" in tops  # the scan saw the file's imports at all


@pytest.mark.parametrize(
    ("module", "source", "problem"),
    [
        (LOOP_MODULE, "from kafka import KafkaConsumer", "imports a Kafka client"),
        (LOOP_MODULE, "import confluent_kafka", "imports a Kafka client"),
        (LOOP_MODULE, "from worker.transport.kafka_python import x", "transport adapter"),
        ("worker.delivery.base", "def f():\n    import kafka.errors", "imports a Kafka client"),
        ("worker.inference.pipeline", "from worker.tools import bench", "only the CLI"),
        ("worker.schemas.readers", "from confluent_kafka import Consumer", "a Kafka client"),
        ("worker.batch.decode", "from worker.inference.models import ModelSet", "batch/ may not"),
        ("worker.inference.models", "from ..service import loop", "inference/ may not use"),
        ("worker.transport.base", "from worker.delivery import Batch", "transport/ may not"),
        ("worker.config._kafka", "from worker.transport import Source", "config/ is the bottom"),
        ("worker.config._load", "def f():\n    from ..metrics import Metrics", "the bottom"),
        ("worker.config._sections", "from worker import logs", "config/ is the bottom"),
        (
            "worker.config.__init__",
            "import worker.batch.records",
            "config/ is the bottom: only errors",
        ),
        ("worker.delivery.base", "from worker.inference import pipeline", "delivery/ may not"),
    ],
)
def test_each_rule_can_fail(module: str, source: str, problem: str) -> None:
    files = worker_files()
    files[module] = files.get(module, "") + "\n" + source + "\n"
    found = layer_violations(files)
    assert len(found) == 1 and problem in found[0], found


def test_config_is_the_bottom_layer() -> None:
    """Every module of worker/config/ is scanned, and all they use of the worker is errors."""
    files = {m: src for m, src in worker_files().items() if m.startswith("worker.config.")}
    used = {
        name.split(".")[1]
        for module, source in files.items()
        for name in imported_modules(source, module)
        if name.startswith("worker.") and not name.startswith("worker.config")
    }
    assert len(files) > 3 and used == {"errors"}
    assert "config" not in LAYERS and all("config" in allowed(layer) for layer in LAYERS)


def test_tools_and_adapters_may_import_kafka() -> None:
    files = {
        "worker.tools.bench": "import kafka",
        "worker.transport.kafka_python.sink": "from kafka import KafkaProducer",
    }
    assert layer_violations(files) == []


def runtime_module_sizes() -> dict[str, int]:
    return {
        module: len(path.read_text(encoding="utf-8").splitlines())
        for module, path in modules("worker")
        if not module.startswith("worker.tools")
    }


def test_runtime_modules_stay_small() -> None:
    sizes = runtime_module_sizes()
    too_big = {m: n for m, n in sizes.items() if n > 400}
    assert too_big == {}
    assert sizes[LOOP_MODULE] < 350
    assert sorted(sizes.values())[len(sizes) // 2] < 150


@pytest.mark.parametrize(
    "package", sorted(p.parent.name for p in (ROOT / "worker").glob("*/__init__.py"))
)
def test_each_package_docstring_names_its_modules(package: str) -> None:
    """A newcomer reads a package's docstring first: it names every module beside it."""
    root = ROOT / "worker" / package
    doc = ast.get_docstring(ast.parse((root / "__init__.py").read_text(encoding="utf-8"))) or ""
    unnamed = [
        p.stem
        for p in sorted(root.glob("*.py"))
        if p.stem != "__init__" and f":mod:`.{p.stem}`" not in doc
    ]
    assert not unnamed, f"worker/{package}/__init__.py does not name {unnamed}"
