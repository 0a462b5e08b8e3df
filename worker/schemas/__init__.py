"""Writer schemas from a Confluent-compatible Schema Registry, for framed input records, and
the registered schemas of framed predictions.

:mod:`.readers` (a reader per writer schema id, cached, waiting with backoff while the registry
does not answer), :mod:`.fields` (where a dotted field path leads in a writer schema),
:mod:`.avro_table` (a group's Avro bytes read into columns with numpy; :mod:`.avro_leaves`, the
writer schema's fields in wire order), :mod:`.json_group` (a
JSON Schema group loaded by orjson and checked by one compiled validator), :mod:`.startup` (the
input subject checked before the first event), :mod:`.output` (the output schema generated from
what is served and registered; Avro), :mod:`.output_protobuf` and :mod:`.output_json_schema`
(the other two formats). confluent-kafka's ``schema_registry`` package (extra
``streamfuse[schema-registry]``) does the HTTP, the framing and the decoding. Imported only when
``schema_registry.url`` is set.
"""

from __future__ import annotations

from worker.schemas.readers import RegistryReaders
from worker.schemas.startup import check_input_subject, check_subject, open_readers

__all__ = ["RegistryReaders", "check_input_subject", "check_subject", "open_readers"]
