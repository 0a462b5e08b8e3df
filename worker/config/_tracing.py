"""The ``tracing`` section: OpenTelemetry spans per batch, exported by OTLP/HTTP (extra otel)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from worker.config._base import _Section, _SectionKeyError

__all__ = ["TracingSettings"]

PIP_LINE = "pip install 'streamfuse[otel]'"
_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")


class TracingSettings(_Section):
    otlp_endpoint: str | None = Field(
        None,
        description="The collector's OTLP/HTTP URL (http://collector:4318; /v1/traces is added "
        "to a URL with no path). Set: one span per batch, linked to each record's traceparent, "
        "with a child per model and per strategy, and trace exemplars on the latency "
        "histograms. Unset: nothing traced, OpenTelemetry not imported. Needs "
        "pip install 'streamfuse[otel]'.",
    )
    service_name: str = Field("streamfuse", description="The spans' service.name resource.")
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="The share of batches traced (by trace id)."
    )
    max_links: int = Field(
        128,
        ge=0,
        description="At most this many links per batch span (the first records' with a valid "
        "traceparent); streamfuse.links_capped on the span says when more had one.",
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="HTTP headers of each export (an authorization token); never logged.",
    )
    timeout_s: float = Field(10.0, gt=0, description="Per export request.")

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {url!r}")
        return url if parts.path.strip("/") else url.rstrip("/") + "/v1/traces"

    @model_validator(mode="after")
    def _library_installed(self) -> TracingSettings:
        if self.otlp_endpoint is None:
            return self
        import importlib.util

        for module in _MODULES:
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                raise _SectionKeyError(
                    "tracing.otlp_endpoint", f"{module} is not installed: {PIP_LINE}"
                )
        return self
