"""A reader per writer schema id: confluent-kafka's deserializer for its type, its field
checks, both cached; waiting with backoff while the registry does not answer.

A group of one writer schema is decoded in one call where its format allows: Avro by numpy
(:mod:`worker.schemas.avro_table`) or fastavro's ``schemaless_reader`` with the writer schema
parsed once (what the deserializer does per record, less its per-call framing, lookups and rule
hooks, which cost about three quarters of its time); Protobuf by the message class's own parser
over the group; JSON Schema by orjson and one compiled validator
(:mod:`worker.schemas.json_group`). A group in which any record fails takes the deserializer
record by record, so each bad record keeps its own reason.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Sequence
from functools import reduce
from operator import attrgetter, itemgetter
from typing import Any

from worker.batch.framed import FieldMap
from worker.errors import RegistryUnavailableError
from worker.schemas import fields as schema_fields
from worker.schemas import json_group
from worker.schemas.avro_table import AvroTable, Columns

__all__ = ["RegistryReaders", "SchemaReader", "registry_down"]

log = logging.getLogger("streamfuse.schemas")

#: Smaller groups go to fastavro: numpy's fixed cost per group (about 100 us for 30 fields)
#: outweighs what it saves per record below about 8 records.
MIN_TABLE = 8


def registry_down(exc: BaseException) -> bool:
    """Whether ``exc`` says the registry did not answer (retry), not that it said no."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(exc, SchemaRegistryError):
        return exc.http_status_code >= 500 or exc.http_status_code in (401, 403, 408, 429)
    return True  # a connection error or a timeout (httpx's), whatever its class


class SchemaReader:
    """One registered writer schema: ``decode`` one framed record, check ``problem``."""

    def __init__(self, schema_id: int, registered: Any, client: Any) -> None:
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer

        self.schema_id = schema_id
        self.schema_str: str = registered.schema_str
        kind = registered.schema_type or "AVRO"
        self._problems: dict[FieldMap, str | None] = {}
        self._descriptor: Any = None
        self._message_class: Any = None
        self._decoder: Callable[[bytes, Any], Any]
        self._avro: Any = None  # the parsed writer schema (references resolved), for fastavro
        self._expanded = self.schema_str  # Avro: every named type written out where it is used
        self._validate: Callable[[Any], Any] | None = None  # JSON Schema, compiled
        self._tables: dict[FieldMap, AvroTable | None] = {}
        if kind == "AVRO":
            self.format = "Avro"
            self._decoder = AvroDeserializer(client)
            self._dotted = False
            self._avro, self._expanded = _parsed_avro(registered, client)
        elif kind == "JSON":
            self.format = "JSON Schema"
            # No subject: the writer schema by id only (no data-contract rules to run).
            self._decoder = JSONDeserializer(
                None,
                schema_registry_client=client,
                conf={"subject.name.strategy": lambda ctx, record_name: None},
            )
            self._dotted = False
            if not registered.references:
                self._validate = json_group.compiled_validator(json.loads(self.schema_str))
        elif kind == "PROTOBUF":
            from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer

            self.format = "Protobuf"
            message_class = _protobuf_message_class(registered, client)
            self._message_class = message_class
            self._descriptor = message_class.DESCRIPTOR
            self._decoder = ProtobufDeserializer(
                message_class, {"use.deprecated.format": False}, schema_registry_client=client
            )
            self._dotted = True
        else:
            raise ValueError(f"schema type {kind} is not read")

    def decode(self, value: bytes) -> Any:
        if self._descriptor is not None:
            self._first_message_only(value)
        return self._decoder(value, None)

    def decode_table(self, values: Sequence[bytes], fields: FieldMap) -> Columns | None:
        """``(X, ids, ts)`` read by numpy when the schema is flat numbers and strings (see
        :mod:`worker.schemas.avro_table`), else None."""
        if self._avro is None or len(values) < MIN_TABLE or min(map(len, values)) <= 5:
            return None
        if fields not in self._tables:
            schema = json.loads(self._expanded)
            self._tables[fields] = AvroTable.plan(
                schema, fields.features, fields.id_field, fields.ts_field
            )
        table = self._tables[fields]
        return None if table is None else table.read(values)

    def decode_all(self, values: Sequence[bytes]) -> list[Any] | None:
        """Every record's object, or None if one cannot be read this way (then ``decode`` each
        one for its reason)."""
        if not values or min(map(len, values)) <= 5:
            return None  # the deserializer refuses a frame with no payload
        if self._descriptor is not None:
            return _protobuf_group(values, self._message_class)
        if self._validate is not None:
            return json_group.decode_group(values, self._validate)
        if self._avro is None:
            return None
        from fastavro import schemaless_reader

        parsed = self._avro
        try:
            return [schemaless_reader(io.BytesIO(v[5:]), parsed, None) for v in values]
        except Exception:  # any failure: the record-by-record path says which
            return None

    def _first_message_only(self, value: bytes) -> None:
        """A Protobuf record names its message type by index: only the first is read (its
        fields are the ones checked), another would be parsed as the wrong type."""
        from confluent_kafka.schema_registry.serde import SchemaId

        schema_id = SchemaId("PROTOBUF")
        schema_id.from_bytes(io.BytesIO(value))
        if schema_id.message_indexes not in ([], [0], None):
            raise ValueError(
                f"message type {schema_id.message_indexes} of the schema; only its first, "
                f"{self._descriptor.full_name}, is read"
            )

    def problem(self, fields: FieldMap) -> str | None:
        if fields not in self._problems:
            self._problems[fields] = self._first_problem(fields)
        return self._problems[fields]

    def _first_problem(self, fields: FieldMap) -> str | None:
        checks = [(p, True, False) for p in fields.features] + [(fields.id_field, False, False)]
        if fields.ts_field is not None:
            checks.append((fields.ts_field, True, True))
        for path, numeric, time in checks:
            problem = self.field_problem(path, numeric=numeric, time=time)
            if problem is not None:
                return problem
        return None

    def field_problem(self, path: str, numeric: bool = True, time: bool = False) -> str | None:
        """Why ``path`` is not a (numeric) field; ``time``: an Avro timestamp is one too."""
        if self.format == "Avro":
            return schema_fields.avro_problem(self._expanded, path, numeric=numeric, time=time)
        if self.format == "JSON Schema":
            return schema_fields.json_schema_problem(self.schema_str, path, numeric=numeric)
        return schema_fields.protobuf_problem(self._descriptor, path, numeric=numeric)

    def getter(self, path: str) -> Callable[[Any], Any]:
        if self._dotted:
            return attrgetter(path)  # a Protobuf message: attrgetter follows dots itself
        parts = path.split(".")
        if len(parts) == 1:
            return itemgetter(path)
        getters = [itemgetter(p) for p in parts]
        return lambda obj: reduce(lambda o, g: g(o), getters, obj)

    def row_getter(self, paths: Sequence[str]) -> Callable[[Any], Sequence[Any]]:
        if self._dotted:
            return _as_tuple(attrgetter(*paths), len(paths))
        return dict_row_getter(paths)


def dict_row_getter(paths: Sequence[str]) -> Callable[[Any], Sequence[Any]]:
    """The values at ``paths`` of a decoded dict, in order: each nested record is looked up
    once per record and its fields read by one ``itemgetter`` (the usual layout, every feature
    in one nested record, costs two C-level calls per record)."""
    parents: dict[str, list[tuple[int, str]]] = {}
    for j, path in enumerate(paths):
        parent, _, leaf = path.rpartition(".")
        parents.setdefault(parent, []).append((j, leaf))
    if len(parents) == 1:
        [(parent, columns)] = parents.items()
        leaves = _as_tuple(itemgetter(*[leaf for _, leaf in columns]), len(columns))
        if [j for j, _ in columns] == list(range(len(paths))):
            if not parent:
                return leaves
            steps = [itemgetter(p) for p in parent.split(".")]
            if len(steps) == 1:
                [step] = steps
                return lambda obj: leaves(step(obj))
    getters = [_dict_path(p) for p in paths]
    return lambda obj: [g(obj) for g in getters]


def _dict_path(path: str) -> Callable[[Any], Any]:
    getters = [itemgetter(p) for p in path.split(".")]
    if len(getters) == 1:
        return getters[0]
    return lambda obj: reduce(lambda o, g: g(o), getters, obj)


def _as_tuple(get: Callable[[Any], Any], n: int) -> Callable[[Any], Sequence[Any]]:
    """``itemgetter``/``attrgetter`` of one name returns the value, not a 1-tuple."""
    return get if n > 1 else (lambda obj: (get(obj),))


def _parsed_avro(registered: Any, client: Any) -> tuple[Any, str]:
    """The writer schema parsed by fastavro with the schemas it references resolved, as the
    deserializer resolves them (from the client's cache: :func:`fetch_references` has fetched
    them), and the same schema expanded (every named type written out where it is used) as
    JSON, for the field checks and the numpy reader."""
    from confluent_kafka.schema_registry._sync.avro import _resolve_named_schema
    from confluent_kafka.schema_registry.common.avro import parse_schema_with_repo
    from fastavro.schema import expand_schema

    named = _resolve_named_schema(registered, client) if registered.references else {}
    parsed = parse_schema_with_repo(registered.schema_str, named)
    expanded = expand_schema(parsed)
    if isinstance(expanded, dict):
        expanded = {k: v for k, v in expanded.items() if not k.startswith("__fastavro")}
        expanded.pop("__named_schemas", None)
    return parsed, json.dumps(expanded)


def fetch_references(client: Any, registered: Any, seen: frozenset[str] = frozenset()) -> None:
    """Fetch every schema ``registered`` references, recursively, into the client's cache, so
    that a registry that stops answering is met here (and waited for), not while the reader is
    built (which would make the schema unreadable for good)."""
    for ref in registered.references or []:
        key = f"{ref.subject}/{ref.version}"
        if key in seen:
            continue
        found = client.get_version(ref.subject, ref.version, True)
        fetch_references(client, found.schema, seen | {key})


def _protobuf_group(values: Sequence[bytes], message_class: Any) -> list[Any] | None:
    """Every record parsed by the message class, when each names the schema's first message
    (the one byte 0 after the frame, as confluent-kafka writes ``[0]``); else None."""
    first = itemgetter(slice(5, 6))
    if b"".join(map(first, values)) != bytes(len(values)):
        return None
    try:
        return list(map(message_class.FromString, map(itemgetter(slice(6, None)), values)))
    except Exception:  # bytes the parser refuses: the record-by-record path says why
        return None


def _protobuf_message_class(registered: Any, client: Any) -> Any:
    """The first message of the writer schema, built from its registered descriptor."""
    from confluent_kafka.schema_registry._sync.protobuf import _resolve_named_schema
    from confluent_kafka.schema_registry.common.protobuf import _init_pool, _str_to_proto
    from google.protobuf.descriptor_pool import DescriptorPool
    from google.protobuf.message_factory import GetMessageClass

    pool = DescriptorPool()
    _init_pool(pool)
    _resolve_named_schema(registered, client, pool)
    proto = _str_to_proto("default", registered.schema_str)
    pool.Add(proto)
    file = pool.FindFileByName(proto.name)
    first = proto.message_type[0].name
    return GetMessageClass(file.message_types_by_name[first])


class RegistryReaders:
    """The :class:`~worker.batch.framed.ReaderSource` over a Schema Registry.

    ``wait`` sleeps one backoff step (False: stop waiting, the worker stops); ``reachable``
    is told why the registry does not answer, and None once it does (for ``/readyz``).
    """

    def __init__(
        self,
        client: Any,
        wait: Callable[[], bool],
        reachable: Callable[[str | None], None] = lambda why: None,
    ) -> None:
        self.client = client
        self.wait = wait
        self.reachable = reachable
        self._readers: dict[int, SchemaReader | str] = {}

    @classmethod
    def from_config(
        cls,
        conf: dict[str, Any],
        wait: Callable[[], bool],
        reachable: Callable[[str | None], None] = lambda why: None,
    ) -> RegistryReaders:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return cls(SchemaRegistryClient(conf), wait, reachable)

    def schema_ids(self, values: Sequence[bytes]) -> list[int | None]:
        # Magic byte 0 then the id, unsigned big-endian (confluent-kafka's SchemaId reads '>I').
        return [int.from_bytes(v[1:5], "big") if len(v) >= 5 else None for v in values]

    def readers(self, ids: set[int]) -> dict[int, SchemaReader | str]:
        missing = [i for i in ids if i not in self._readers]
        while missing:
            try:
                for schema_id in list(missing):
                    self._readers[schema_id] = self._fetch(schema_id)
                    missing.remove(schema_id)
            except Exception as exc:
                if not registry_down(exc):
                    raise
                why = f"the schema registry does not answer ({type(exc).__name__}: {exc})"
                log.warning("%s; waiting for schema ids %s", why, sorted(missing))
                self.reachable(why)
                if not self.wait():
                    raise RegistryUnavailableError(why) from exc
                continue
            self.reachable(None)
        return {i: self._readers[i] for i in ids}

    def _fetch(self, schema_id: int) -> SchemaReader | str:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            registered = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if registry_down(exc):
                raise
            return f"unknown schema id {schema_id} (the registry says: {exc.error_message})"
        try:
            fetch_references(self.client, registered)
        except SchemaRegistryError as exc:
            if registry_down(exc):
                raise
            return (
                f"schema id {schema_id} references a schema the registry does not have "
                f"({exc.error_message})"
            )
        try:
            return SchemaReader(schema_id, registered, self.client)
        except Exception as exc:  # a schema its library cannot read: its records are poison
            return f"schema id {schema_id} cannot be read: {type(exc).__name__}: {exc}"
