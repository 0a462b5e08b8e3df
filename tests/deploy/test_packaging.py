"""pyproject.toml and the Dockerfile, offline: setuptools reads the project without a warning
(SPDX license, the LICENSE file), the version is written once and the metadata and
``streamfuse --version`` say the same, and the image installs every extra of ``[all]`` from
files it copies."""

from __future__ import annotations

import re
import shlex
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pytest
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

import worker
from tests.support.dashboards import REPO
from worker.cli import build_parser

PYPROJECT = REPO / "pyproject.toml"
DOCKERFILE = REPO / "Dockerfile"


def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    joined = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    logical = re.sub(r"\\\n", " ", joined).splitlines()
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.strip().split(None, 1) for line in logical if line.strip())
    ]


def read_project() -> tuple[Distribution, list[warnings.WarningMessage]]:
    """The distribution as setuptools builds its metadata, and every warning it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), PYPROJECT)
    return dist, caught


def test_setuptools_reads_the_project_without_a_warning() -> None:
    dist, caught = read_project()
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert dist.metadata.license_expression == "Apache-2.0"
    assert dist.metadata.license_files == ["LICENSE"]
    assert (REPO / "LICENSE").read_text(encoding="utf-8").split()[:4] == [
        "Apache",
        "License",
        "Version",
        "2.0,",
    ]
    # The SPDX expression and license-files need setuptools 77 (PEP 639).
    (requirement,) = pyproject()["build-system"]["requires"]
    assert requirement == "setuptools>=77"


def test_the_version_is_written_once_and_the_cli_says_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = pyproject()["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    dist, _ = read_project()
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"streamfuse {dist.metadata.version}"
    assert dist.metadata.version == worker.__version__


def installed_extras(instructions: list[tuple[str, str]]) -> set[str]:
    """The extras of the local project (``.[a,b]``) the Dockerfile's RUN lines pip install."""
    extras: set[str] = set()
    for instruction, args in instructions:
        if instruction != "RUN":
            continue
        for word in shlex.split(args):
            if match := re.fullmatch(r"\.\[([\w,-]+)\]", word):
                extras.update(match.group(1).split(","))
    return extras


def extras_of_all() -> set[str]:
    optional = pyproject()["project"]["optional-dependencies"]
    (self_reference,) = optional["all"]
    listed = re.fullmatch(r"streamfuse\[([\w,-]+)\]", self_reference)
    assert listed, self_reference
    extras = set(listed.group(1).split(","))
    assert {"librdkafka", "xgboost", "lightgbm", "onnx"} <= extras <= set(optional)
    return extras


def build_inputs() -> set[str]:
    """What setuptools reads to build the project: pyproject, readme, licenses, packages."""
    config = pyproject()
    project = config["project"]
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return {"pyproject.toml", project["readme"], *project["license-files"]} | {
        pattern.rstrip("*") for pattern in include
    }


def image_problems(dockerfile: Path) -> list[str]:
    """What the image would lack: an extra of [all], a build input, CPU-only torch, or the
    OpenMP runtime LightGBM's wheel links but does not bring (XGBoost, torch and scikit-learn
    bundle theirs)."""
    instructions = dockerfile_instructions(dockerfile)
    problems = []
    if (extras := installed_extras(instructions)) != (wanted := extras_of_all()):
        problems.append(f"extras {sorted(extras)}, [all] has {sorted(wanted)}")
    copied: set[str] = set()
    for instruction, args in instructions:
        if instruction == "COPY":
            *sources, _destination = args.split()
            copied.update(source.rstrip("/") for source in sources)
    if missing := build_inputs() - copied:
        problems.append(f"not copied: {sorted(missing)}")
    runs = " ".join(args for instruction, args in instructions if instruction == "RUN")
    if "--extra-index-url https://download.pytorch.org/whl/cpu" not in runs:
        problems.append("torch not from the CPU-only index")
    if not re.search(r"apt-get install [^&]*\blibgomp1\b", runs):
        problems.append("no libgomp1")
    return problems


def test_the_image_installs_every_extra_of_all_from_what_it_copies() -> None:
    assert all((REPO / name).exists() for name in build_inputs())
    assert image_problems(DOCKERFILE) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (",parquet]", "]", "extras"),
        (' ".[librdkafka,xgboost,lightgbm,onnx,parquet]"', " .", "extras"),
        (" LICENSE ./", " ./", "not copied: ['LICENSE']"),
        ("COPY model_store ./model_store\n", "", "not copied: ['model_store']"),
        ("--extra-index-url https://download.pytorch.org/whl/cpu", "", "CPU-only"),
        (" libgomp1", " curl", "libgomp1"),
    ],
    ids=["extra-left-out", "no-extra", "no-license", "no-package", "cuda-torch", "no-openmp"],
)
def test_a_broken_dockerfile_is_caught(tmp_path: Path, old: str, new: str, problem: str) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace(old, new), encoding="utf-8")
    assert any(problem in found for found in image_problems(broken)), image_problems(broken)
