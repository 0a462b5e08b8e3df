"""The ``schema_registry`` and ``input`` sections: Confluent-framed records and their fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator

from worker.config._base import _Section, _SectionKeyError

__all__ = ["InputSettings", "SchemaRegistrySettings"]

PIP_LINE = "pip install 'streamfuse[schema-registry]'"


class SchemaRegistrySettings(_Section):
    url: str | None = Field(
        None,
        description="Base URL of a Confluent-compatible Schema Registry (comma-separated for "
        "several). Set: each record's format is told by its bytes, Confluent-framed Avro, "
        "Protobuf or JSON Schema by its registered schema, else plain JSON. Unset: a framed "
        "record is dead-lettered. Needs pip install 'streamfuse[schema-registry]'.",
    )
    basic_auth: SecretStr | None = Field(
        None, description="'user:password' for HTTP basic auth; never logged."
    )
    ssl_ca: Path | None = Field(None, description="CA bundle (file or folder) for https.")
    ssl_verify: bool = Field(True, description="false: do not verify the registry's certificate.")
    ssl_certificate: Path | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_key: Path | None = Field(None, description="Client key (mutual TLS).")
    ssl_key_password: SecretStr | None = Field(None, description="The client key's password.")
    timeout_s: float = Field(
        5.0, gt=0, description="Per HTTP request; a registry slower than this is not answering."
    )
    cache_s: float = Field(
        300.0,
        ge=0,
        description="How long the input subject's latest version is cached. Schemas by id "
        "never change and are fetched once.",
    )

    @model_validator(mode="after")
    def _library_installed(self) -> SchemaRegistrySettings:
        if self.url is None:
            return self
        import importlib.util

        for module in ("confluent_kafka", "fastavro", "google.protobuf", "jsonschema"):
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                raise _SectionKeyError(
                    "schema_registry.url", f"{module} is not installed: {PIP_LINE}"
                )
        if (self.ssl_key is not None or self.ssl_key_password) and self.ssl_certificate is None:
            raise _SectionKeyError("schema_registry.ssl_key", "needs ssl_certificate")
        return self

    def client_config(self) -> dict[str, Any]:
        """confluent-kafka's SchemaRegistryClient configuration (holds the secrets)."""
        conf: dict[str, Any] = {"url": self.url, "timeout": self.timeout_s, "max.retries": 0}
        if self.basic_auth is not None:
            conf["basic.auth.user.info"] = self.basic_auth.get_secret_value()
        if not self.ssl_verify:
            conf["ssl.ca.location"] = False
        elif self.ssl_ca is not None:
            conf["ssl.ca.location"] = str(self.ssl_ca)
        if self.ssl_certificate is not None:
            conf["ssl.certificate.location"] = str(self.ssl_certificate)
        if self.ssl_key is not None:
            conf["ssl.key.location"] = str(self.ssl_key)
        if self.ssl_key_password is not None:
            conf["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        if self.cache_s > 0:
            conf["cache.latest.ttl.sec"] = self.cache_s
        return conf


class InputSettings(_Section):
    id_field: str = Field(
        "id", description="The field of a framed record that holds the event id (dotted path)."
    )
    ts_field: str | None = Field(
        None,
        description="The field of a framed record that holds the event time in epoch seconds "
        "(or an Avro timestamp-millis or timestamp-micros long; dotted path); unset, or null "
        "in a record: the record's Kafka timestamp.",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Feature name to the field of a framed record that holds it (dotted path "
        "for nested records), for names that differ; every other feature is read from the "
        "field of its own name.",
    )
