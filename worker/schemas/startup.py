"""The check before the first event: the input subject's latest schema has every field."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from worker.batch.framed import FieldMap
from worker.errors import ConfigError
from worker.schemas.readers import RegistryReaders, SchemaReader, registry_down

__all__ = ["check_input_subject", "check_subject"]

log = logging.getLogger("streamfuse.schemas")


def check_input_subject(client: Any, topic: str, fields: FieldMap) -> str | None:
    """Raise :class:`ConfigError` when the latest schema of ``<topic>-value`` lacks a field the
    models need, or holds it as something other than a number. Returns what was checked (None:
    the subject does not exist, or the registry did not answer; records are checked one by one).
    """
    return check_subject(client, f"{topic}-value", fields)


def check_subject(client: Any, subject: str, fields: FieldMap) -> str | None:
    """:func:`check_input_subject` of any ``subject`` (``store publish --subject``)."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        latest = client.get_latest_version(subject)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            log.info("no subject %s in the schema registry yet: records checked as read", subject)
            return None
        if not registry_down(exc):
            raise ConfigError("schema_registry.url", f"reading subject {subject}: {exc}") from exc
        log.warning("the schema registry did not answer (%s): %s not checked", exc, subject)
        return None
    except Exception as exc:  # a connection error or a timeout
        log.warning("the schema registry did not answer (%s): %s not checked", exc, subject)
        return None
    try:
        reader = SchemaReader(latest.schema_id, latest.schema, client)
    except Exception as exc:
        if isinstance(exc, SchemaRegistryError | OSError) or "Timeout" in type(exc).__name__:
            log.warning("the schema registry did not answer (%s): %s not checked", exc, subject)
            return None
        raise ConfigError(
            "schema_registry.url", f"subject {subject!r}: its latest schema cannot be read: {exc}"
        ) from exc
    problem = reader.problem(fields)
    if problem is not None:
        raise ConfigError(
            "input.fields",
            f"subject {subject!r} (version {latest.version}, schema id {latest.schema_id}, "
            f"{reader.format}): {problem}; the models need the fields "
            f"{', '.join(fields.features)} (input.fields renames them)",
        )
    return f"{subject} version {latest.version} ({reader.format})"


def open_readers(
    settings: Any, schema: Any, wait: Callable[[], bool], reached: Callable[[str | None], None]
) -> RegistryReaders:
    """The writer schemas' readers for ``settings`` (``schema_registry.url`` set), after checking
    that the input subject's latest schema holds every feature the models' ``schema`` needs
    (else :class:`ConfigError`: exit 2). ``wait`` backs off while the registry does not answer
    (False: stop); ``reached`` tells the health checks whether it answers."""
    readers = RegistryReaders.from_config(settings.schema_registry.client_config(), wait, reached)
    i = settings.input
    fields = FieldMap.for_schema(schema, i.fields, i.id_field, i.ts_field)
    checked = check_input_subject(readers.client, settings.topics.input, fields)
    if checked is not None:
        log.info("input schema checked: %s holds every feature", checked)
    return readers
