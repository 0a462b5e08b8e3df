"""What every settings section shares: the strict base model, the key error, secrets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["ENV_PREFIX", "SECRET_WORDS"]

ENV_PREFIX = "STREAMFUSE_"
SECRET_WORDS = (
    "password",
    "secret",
    "token",
    "sasl_plain_username",
    "sasl.username",
    "keyfile",
    "key.pem",
    "certificate.pem",
)


class _SectionKeyError(ValueError):
    """A bad key inside a free-form section, reported with its full dotted path."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(problem)


class _Section(BaseModel):
    # Numbers are taken for text keys: STREAMFUSE_KAFKA__INSTANCE_ID=2 (a StatefulSet's pod
    # ordinal) is parsed as the YAML scalar 2, and `instance_id: 2` in the file reads the same.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


def _is_secret(key: object) -> bool:
    return any(w in str(key).lower() for w in SECRET_WORDS)


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: "***" if _is_secret(k) else _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value
