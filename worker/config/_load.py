"""Reading, overriding from the environment and validating the config into :class:`Settings`."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from worker.config._base import ENV_PREFIX, _is_secret, _SectionKeyError
from worker.config._sections import Settings
from worker.errors import ConfigError

__all__ = ["load_settings", "settings_from_dict"]


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override from the environment, and validate the config file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        # Only the position and the kind of problem: PyYAML's full message quotes the line,
        # which may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ConfigError("", f"{path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{path} must hold a mapping of sections, not {type(data).__name__}")
    return settings_from_dict(data, base_dir=path.parent, environ=environ)


def settings_from_dict(
    data: Mapping[str, Any],
    base_dir: str | Path = ".",
    environ: Mapping[str, str] | None = None,
) -> Settings:
    data = dict(data)
    if isinstance(data.get("store"), str | Path):  # the folder alone: the env may add keys
        data["store"] = {"path": data["store"]}
    merged = _apply_env(data, os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise _config_error(exc) from None
    store = settings.store
    paths = {"path": store.path, "key_file": store.key_file}
    resolved = {k: Path(base_dir) / p for k, p in paths.items() if p and not p.is_absolute()}
    if resolved:
        settings = settings.model_copy(update={"store": store.model_copy(update=resolved)})
    return settings


_PASS_THROUGH = (["kafka", "client"], ["kafka", "consumer"], ["kafka", "producer"])


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    overrides = []
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(ENV_PREFIX + "TEST"):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if all(path):
            overrides.append((path, raw))
    library = next((raw for path, raw in overrides if path == ["kafka", "library"]), None)
    if library is None:
        library = (data.get("kafka") or {}).get("library") if isinstance(data, dict) else None
    for path, raw in overrides:
        if library == "confluent-kafka" and len(path) == 3 and path[:2] in _PASS_THROUGH:
            # A variable's name cannot hold a dot: librdkafka's sasl.password is SASL_PASSWORD.
            path = [*path[:2], path[2].replace("_", ".")]
        if _is_secret(path[-1]):
            value: Any = raw  # a password stays the exact string given, never a number
        else:
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            else:
                child = dict(child)
                node[part] = child
            node = child
        node[path[-1]] = value
    return data


def _config_error(exc: ValidationError) -> ConfigError:
    # Only the location and pydantic's message: never the input value, which may be a secret.
    # An unknown key first: a misspelt required key ("model:") is also reported as missing, and
    # the unknown one is what says what was meant.
    errors = exc.errors()
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, _SectionKeyError):
        return ConfigError(cause.key, cause.problem)
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc)
    if first["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], known, n=1)
        problem = "unknown key" + (f"; did you mean '{hint[0]}'?" if hint else "")
        if known:
            problem += f" (known: {', '.join(sorted(known))})"
        return ConfigError(key, problem)
    if first["type"] == "missing":
        return ConfigError(key, "is required")
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return ConfigError(key, f"{first['msg']}{more}")


def _known_keys(parent: list[str]) -> list[str]:
    model: Any = Settings
    for part in parent:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        if inner:  # tuple[ModelRef, ...] and the like
            annotation = inner[0]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
