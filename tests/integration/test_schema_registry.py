"""Records framed by a real Schema Registry (dev/schema-registry), read by a real worker."""

from __future__ import annotations

import pytest

from tests.support.registry import SchemaRegistry

pytestmark = pytest.mark.schema_registry


def test_dev_registry_serves_the_confluent_api(schema_registry: SchemaRegistry) -> None:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    client = SchemaRegistryClient({"url": schema_registry.url})
    avro = '{"type": "record", "name": "Probe", "fields": [{"name": "x", "type": "double"}]}'
    schema_id = client.register_schema("probe-value", Schema(avro, "AVRO"))
    assert client.get_schema(schema_id).schema_type == "AVRO"
    assert client.get_latest_version("probe-value").schema_id == schema_id
