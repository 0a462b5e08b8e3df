"""A three-node KRaft cluster run by ``dev/kafka start --brokers 3`` for the cluster fault tests:
node control (SIGKILL, SIGTERM, start on the kept data dir), partition leaders and in-sync
replicas, and which node coordinates a consumer group or a transactional id."""

from __future__ import annotations

import os
import struct
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from tests.support.kafka import DEV_KAFKA, wait_for

N_NODES = 3
# Internal topics the coordinators live on (dev/kafka gives each 4 partitions).
OFFSETS, TRANSACTIONS = "__consumer_offsets", "__transaction_state"


def java_hash_partition(key: str, n_partitions: int) -> int:
    """The partition of an internal topic that Kafka gives ``key``: ``Utils.abs(key.hashCode())
    % n`` with Java's ``String.hashCode`` (how a group or transactional id finds its
    coordinator). ``Utils.abs`` is ``Math.abs`` (0 for ``Integer.MIN_VALUE``), not the
    partitioner's ``toPositive`` (``& 0x7fffffff``): the two differ for every negative hash."""
    data = key.encode("utf-16-be")
    h = 0
    for unit in struct.unpack(f">{len(data) // 2}H", data):  # Java chars: UTF-16 code units
        h = (31 * h + unit) & 0xFFFFFFFF
    signed = h - (1 << 32) if h & 0x80000000 else h
    return (0 if signed == -(1 << 31) else abs(signed)) % n_partitions


@dataclass
class Cluster:
    bootstrap: str
    port: int
    started_here: bool

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_BROKERS": str(N_NODES)}

    def dev(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(DEV_KAFKA), *args], env=self.env, capture_output=True, text=True, timeout=180
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"dev/kafka {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return out

    def kill(self, node: int) -> None:
        self.dev("kill", "--node", str(node))

    def start(self, node: int) -> None:
        self.dev("start", "--node", str(node))

    def restart(self, node: int) -> None:
        self.dev("restart", "--node", str(node))

    def up(self, node: int) -> bool:
        return self.dev("status", "--node", str(node), check=False).returncode == 0

    @contextmanager
    def admin(self) -> Iterator[KafkaAdminClient]:
        # A fresh client each time: a long-lived one caches leaders and coordinators of dead nodes.
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="cluster-tests")
        try:
            yield admin
        finally:
            admin.close()

    def create_topic(self, name: str, partitions: int, **configs: str) -> str:
        """With the brokers' default replication (3) and min.insync.replicas (2)."""
        with self.admin() as admin:
            admin.create_topics([NewTopic(name, partitions, -1, topic_configs=configs)])
        wait_for(lambda: self.in_sync([name]), timeout=60, what=f"topic {name} in sync")
        return name

    def partitions(self, topics: Iterable[str]) -> list[dict[str, Any]]:
        with self.admin() as admin:
            described = admin.describe_topics(list(topics))
        return [dict(p, topic=t["name"]) for t in described for p in t.get("partitions") or []]

    def in_sync(self, topics: Iterable[str]) -> bool:
        """Every partition of ``topics`` has a leader and all three replicas in sync."""
        try:
            parts = self.partitions(topics)
        except KafkaError:
            return False
        return bool(parts) and all(
            p["leader_id"] >= 0 and len(p["isr_nodes"]) == N_NODES for p in parts
        )

    def leaders(self, topics: Iterable[str]) -> Counter[int]:
        """How many partitions of ``topics`` each node leads."""
        return Counter(p["leader_id"] for p in self.partitions(topics))

    def coordinator(self, internal_topic: str, key: str, preferred: bool = False) -> int:
        """The node leading ``key``'s partition of ``__consumer_offsets`` (its group
        coordinator) or ``__transaction_state`` (its transaction coordinator); ``preferred``:
        the node preferred to lead it (the first of its replicas), whoever leads it now."""
        parts = self.partitions([internal_topic])
        wanted = next(
            p for p in parts if p["partition_index"] == java_hash_partition(key, len(parts))
        )
        return int(wanted["replica_nodes"][0] if preferred else wanted["leader_id"])

    def preferred_lead(self, topics: Iterable[str]) -> bool:
        """Every partition of ``topics`` is led by its preferred replica."""
        return all(p["leader_id"] == p["replica_nodes"][0] for p in self.partitions(topics))

    def replication(self, topic: str) -> set[int]:
        """The replica count of each partition of ``topic``."""
        return {len(p["replica_nodes"]) for p in self.partitions([topic])}


def start_cluster(port: int) -> Iterator[Cluster]:
    """``dev/kafka start --brokers 3`` on ``port`` (nodes on port..port+5), stopped afterwards
    if it was started here; a cluster already up there is used as it is."""
    cluster = Cluster("", port, started_here=False)
    already_up = cluster.dev("status", check=False).returncode == 0
    out = cluster.dev("start", "--brokers", str(N_NODES))
    cluster.bootstrap = out.stdout.strip().splitlines()[-1]
    cluster.started_here = not already_up
    try:
        yield cluster
    finally:
        if cluster.started_here:
            cluster.dev("stop", check=False)
        else:  # someone else's cluster: leave it whole (a failed test may have left a node down)
            for node in range(1, N_NODES + 1):
                if not cluster.up(node):
                    cluster.dev("start", "--node", str(node), check=False)
