"""Writer schemas from a Confluent-compatible Schema Registry, for framed input records.

confluent-kafka's ``schema_registry`` package (extra ``streamfuse[schema-registry]``) does the
HTTP, the framing and the decoding; this package picks the decoder by the registered schema's
type, checks each schema's fields against what the models need once, caches both by schema id,
and waits (with backoff) while the registry does not answer. Imported only when
``schema_registry.url`` is set.
"""

from __future__ import annotations

from worker.schemas.readers import RegistryReaders
from worker.schemas.startup import check_input_subject, check_subject, open_readers

__all__ = ["RegistryReaders", "check_input_subject", "check_subject", "open_readers"]
