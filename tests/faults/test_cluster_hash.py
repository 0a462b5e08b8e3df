"""The coordinator arithmetic the cluster tests rely on to pick which node to kill: known
answers of Java's ``Utils.abs(key.hashCode()) % 50``, printed by jshell on this machine."""

from __future__ import annotations

import pytest

from tests.faults.cluster import java_hash_partition


@pytest.mark.parametrize(
    ("key", "partition"),
    [
        ("cluster-eos-gc-1a2b3c4d5e", 44),  # hashCode -1478655094
        ("streamfuse-cluster-eos-gc-1a2b3c4d5e-0", 47),  # -1665949247
        ("polygenelubricants", 0),  # Integer.MIN_VALUE: Utils.abs gives 0
        ("zzzzzzzzzz", 36),  # -1580979136
        ("group-9", 7),  # 293427307
    ],
)
def test_a_key_finds_the_partition_kafka_gives_it(key: str, partition: int) -> None:
    assert java_hash_partition(key, 50) == partition
