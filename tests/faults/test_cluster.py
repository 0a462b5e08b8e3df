"""Broker faults on a three-node cluster (replication 3, ``min.insync.replicas`` 2) while a stream
flows, one worker per delivery guarantee, both through the same faults in sequence:

1. ``leader``: SIGKILL the node leading most input and output partitions, bring it back;
2. ``txn_coordinator``: SIGKILL the exactly_once worker's transaction coordinator, bring it back;
3. ``group_coordinator``: SIGKILL the at_least_once worker's group coordinator, bring it back;
4. ``rolling``: restart the three nodes one at a time (SIGTERM, start, in sync again);
5. ``below_min_isr``: SIGKILL two nodes: the workers must stop publishing (fewer in-sync
   replicas than min.insync.replicas, and no controller quorum), count the failed batches, log
   them, stay up, and go on once a second node returns.

Each phase reports the duplicates appended during it (output topics stamp records with the
broker's append time; the tails read ``read_committed`` for exactly_once) and ``resumed_s``: the
time from the fault to the end of the longest pause in the worker's published counter after it
(counted once a batch is flushed, or its transaction committed). At the end every
id must have come out (0 lost) and exactly_once must show 0 duplicates. Timings are reported,
not asserted. The cluster runs on ``KAFKA_CLUSTER_TEST_PORT`` (default 19192; nodes use it and
the five ports above it), started once for the module and stopped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.cluster import OFFSETS, TRANSACTIONS, Cluster, start_cluster
from tests.faults.support import Tail, fast_group, produce_at_rate
from tests.support.kafka import unique, wait_for
from tests.support.worker import Topics, WorkerProcess, events, write_config

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.slow]

GUARANTEES = ("at_least_once", "exactly_once")
RATE = 100  # events per second per stream
PARTITIONS = 4
MAX_EVENTS = 100_000  # an upper bound: input stops once the phases are done
PROGRESS = 300  # new ids per stream that show a phase's stream flows again
BELOW_MIN_ISR_HOLD_S = 14.0  # longer than the workers' watchdog (10 s): failures get reported
PUBLISHED = "streamfuse_events_published_total"
LIBRARIES = os.environ.get("KAFKA_CLUSTER_TEST_LIBRARIES", "kafka-python").split(",")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from start_cluster(int(os.environ.get("KAFKA_CLUSTER_TEST_PORT", "19192")))


@dataclass
class Stream:
    guarantee: str
    topics: Topics
    group: str
    config: Path
    ids: list[str]
    values: list[bytes]
    worker: WorkerProcess
    tail: Tail
    stop_input: threading.Event = field(default_factory=threading.Event)
    sent: list[int] = field(default_factory=list)
    producer: threading.Thread | None = None

    @property
    def transactional_id(self) -> str:
        return f"streamfuse-{self.group}-0"

    def start_input(self, bootstrap: str) -> None:
        keys = [i.encode() for i in self.ids]

        def run() -> None:
            self.sent.append(
                produce_at_rate(
                    bootstrap,
                    self.topics.input,
                    self.values,
                    keys,
                    RATE,
                    self.stop_input,
                    enable_idempotence=True,
                    delivery_timeout_ms=120_000,
                )
            )

        self.producer = threading.Thread(target=run, name=f"input-{self.guarantee}")
        self.producer.start()

    def metric(self, name: str) -> float:
        port = yaml.safe_load(self.config.read_text())["metrics"]["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and not sample.labels:
                    return float(sample.value)
        raise LookupError(name)


def resumed_s(samples: list[tuple[float, float]], since: float, until: float) -> float | None:
    """Seconds from ``since`` to the end of the longest stretch in [since, until] in which the
    worker's published counter (``samples``: time, value) did not move."""
    last_change, value = since, None
    longest: tuple[float, float] | None = None
    for at, published in samples:
        if at < since:
            value = published
            continue
        if at > until:
            break
        if value is not None and published > value:
            if longest is None or at - last_change > longest[0]:
                longest = (at - last_change, at)
            last_change = at
        value = published
    return None if longest is None else round(longest[1] - since, 1)


class Sampler:
    """The worker's published counter, read every 0.25 s in a thread."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.samples.append((time.time(), self.stream.metric(PUBLISHED)))
            except OSError:
                pass  # the worker is busy or gone: the next sample tells

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Phases:
    """Runs faults against both streams and counts, per phase, what arrived during it."""

    def __init__(self, cluster: Cluster, streams: dict[str, Stream]) -> None:
        self.cluster = cluster
        self.streams = streams
        self.rows: dict[str, dict[str, Any]] = {}
        self.windows: dict[str, tuple[float, float, float]] = {}

    @property
    def topics(self) -> list[str]:
        return [t for s in self.streams.values() for t in (s.topics.input, s.topics.output)]

    def note(self, what: str) -> None:
        """A timestamped progress line (pytest shows them when the test fails)."""
        counts = {g: int(s.metric(PUBLISHED)) for g, s in self.streams.items()}
        print(f"{time.strftime('%H:%M:%S')} {what} {counts}", flush=True)

    def flowing(self, timeout: float = 90) -> None:
        """Each worker publishes ``PROGRESS`` more events (and is still up). Its own counter,
        not a tail: a tail's failover after a leader's death took up to 70 s here, while the
        workers published on."""
        self.note("waiting for progress")
        for s in self.streams.values():
            target = s.metric(PUBLISHED) + PROGRESS
            wait_for(
                lambda s=s, target=target: self._alive(s) and s.metric(PUBLISHED) >= target,
                timeout=timeout,
                interval=0.2,
                what=f"{s.guarantee} publishing again",
            )

    def _alive(self, s: Stream) -> bool:
        assert s.worker.proc is not None
        if s.worker.proc.poll() is not None:
            raise AssertionError(f"the {s.guarantee} worker exited:\n{s.worker.text()[-6000:]}")
        return True

    def whole(self, timeout: float = 120) -> None:
        """All three nodes up, every partition of the streams and coordinators in sync."""
        self.note("waiting for every partition in sync")
        wait_for(
            lambda: self.cluster.in_sync([*self.topics, OFFSETS, TRANSACTIONS]),
            timeout=timeout,
            interval=0.5,
            what="every partition back in sync on three nodes",
        )

    def run(self, name: str, fault: Callable[[], float], **about: Any) -> None:
        """``fault`` breaks something and returns the moment to measure resumption from."""
        self.note(f"phase {name} {about}")
        started = time.time()
        since = fault()
        self.flowing()
        ended = time.time()
        self.windows[name] = (started, since, ended)
        self.rows[name] = {**about, "phase_s": round(ended - started, 1)}
        self.whole()

    def count(self, samplers: dict[str, Sampler]) -> None:
        """Once every id is out: per phase and stream, the duplicates appended during it and
        the time to the end of the longest pause in publishing after its fault."""
        for g, s in self.streams.items():
            records = sorted(s.tail.arrived(), key=lambda r: r.timestamp)
            first_seen: set[Any] = set()
            dupes_at: list[float] = []
            for r in records:
                key = _id(r)
                if key in first_seen:
                    dupes_at.append(r.timestamp / 1000)
                first_seen.add(key)
            for name, (started, since, ended) in self.windows.items():
                self.rows[name][g] = {
                    "duplicates": sum(started <= at < ended for at in dupes_at),
                    "resumed_s": resumed_s(samplers[g].samples, since, ended),
                }


def _id(record: Any) -> Any:
    return orjson.loads(record.value)["id"]


def failed(s: Stream) -> float:
    """What the worker's metrics count of failed deliveries: at_least_once's failed flushes at
    once; exactly_once counts a stuck transaction as aborted at once, and as a failed delivery
    only once a new producer is ready (which needs a transaction coordinator back)."""
    return s.metric("streamfuse_delivery_failures_total") + s.metric(
        "streamfuse_transactions_aborted_total"
    )


def roles(phases: Phases, node: int) -> list[str]:
    """What ``node`` is for each stream: leader of some partitions, group/txn coordinator."""
    out = []
    c = phases.cluster
    for g, s in phases.streams.items():
        if c.coordinator(OFFSETS, s.group) == node:
            out.append(f"{g} group coordinator")
        if g == "exactly_once" and c.coordinator(TRANSACTIONS, s.transactional_id) == node:
            out.append(f"{g} transaction coordinator")
    return out


# Five faults with eight node starts (a JVM start each: 10 s on a quiet machine, 30-60 s at a
# load average of 20) do not fit the suite's 600 s per-test timeout on a busy machine.
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("library", LIBRARIES)
def test_cluster_faults_lose_nothing(
    cluster: Cluster,
    trained_store: Path,
    test_rows: np.ndarray,
    tmp_path: Path,
    figures: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    library: str,
) -> None:
    monkeypatch.setenv("STREAMFUSE_KAFKA__LIBRARY", library)
    X = np.resize(test_rows, (MAX_EVENTS, test_rows.shape[1]))
    streams: dict[str, Stream] = {}
    for guarantee in GUARANTEES:
        topics = Topics(
            input=cluster.create_topic(unique("cin"), PARTITIONS),
            output=cluster.create_topic(
                unique("cout"), PARTITIONS, **{"message.timestamp.type": "LogAppendTime"}
            ),
            labels="",
            dead_letter=unique("cdlq"),  # left to the worker to create: it must get RF 3
        )
        group = unique(f"cluster-{guarantee}")
        config = write_config(
            tmp_path / f"{guarantee}.yaml",
            store=trained_store,
            bootstrap=cluster.bootstrap,
            topics=topics,
            group=group,
            shadows=(),
            kafka={
                "processing_guarantee": guarantee,
                "transaction_timeout_ms": 10_000,
                "watchdog_s": 10.0,
                "consumer": fast_group(library),
            },
            batch={"max_events": 200, "max_wait_ms": 20},
        )
        doc = yaml.safe_load(config.read_text())
        doc["topics"].update(labels=None, create=True)  # no labels; the worker makes the DLQ
        config.write_text(yaml.safe_dump(doc))
        ids, values = events(X, f"c{guarantee[0]}")
        isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"
        streams[guarantee] = Stream(
            guarantee,
            topics,
            group,
            config,
            ids,
            values,
            WorkerProcess(config, tmp_path / f"{guarantee}.log").start(),
            Tail(cluster.bootstrap, topics.output, isolation),
        )
    phases = Phases(cluster, streams)
    samplers: dict[str, Sampler] = {}
    try:
        for s in streams.values():
            s.worker.wait_assigned(timeout=120)
            assert cluster.replication(s.topics.dead_letter) == {3}, "worker-created topic"
            s.start_input(cluster.bootstrap)
            samplers[s.guarantee] = Sampler(s)
        phases.flowing()

        def kill_and_return(node: int) -> Callable[[], float]:
            def fault() -> float:
                at = time.time()
                cluster.kill(node)
                phases.flowing()  # published again with the node dead
                phases.note(f"starting node {node} again")
                cluster.start(node)
                return at

            return fault

        leader = cluster.leaders(phases.topics).most_common(1)[0][0]
        phases.run(
            "leader",
            kill_and_return(leader),
            node=leader,
            leads=cluster.leaders(phases.topics)[leader],
            of=len(phases.topics) * PARTITIONS,
            roles=roles(phases, leader),
        )
        # The coordinators: each role once. A node often holds several (the leader phase's
        # node may have been every coordinator already): a role a kill has hit is not killed
        # again, the figures say which phase covered it.
        killed_roles = set(phases.rows["leader"]["roles"])
        eos, alo = streams["exactly_once"], streams["at_least_once"]
        for name, internal, key, role in (
            ("txn_coordinator", TRANSACTIONS, eos.transactional_id, "exactly_once transaction"),
            ("group_coordinator", OFFSETS, alo.group, "at_least_once group"),
        ):
            if f"{role} coordinator" in killed_roles:
                phases.rows[name] = {"covered_by": "an earlier phase's kill"}
                continue
            node = cluster.coordinator(internal, key)
            held = roles(phases, node)
            killed_roles.update(held)
            phases.run(name, kill_and_return(node), node=node, roles=held)

        def rolling() -> float:
            at = time.time()
            for node in (1, 2, 3):
                cluster.restart(node)
                phases.whole()
            return at

        phases.run("rolling", rolling)

        survivor = leader
        first, second = (n for n in (1, 2, 3) if n != survivor)
        stalled: dict[str, Any] = {}

        def below_min_isr() -> float:
            cluster.kill(first)
            phases.flowing()  # two nodes: still min.insync.replicas
            failures = {g: failed(s) for g, s in streams.items()}
            cluster.kill(second)
            time.sleep(3.0)  # batches already acknowledged finish arriving
            held = {g: s.metric(PUBLISHED) for g, s in streams.items()}
            time.sleep(BELOW_MIN_ISR_HOLD_S - 3.0)
            for g, s in streams.items():
                stalled[g] = {
                    "published_while_one_node": s.metric(PUBLISHED) - held[g],
                    "failures_counted": failed(s) - failures[g],
                }
            at = time.time()
            cluster.start(second)  # a second node: the quorum and min.insync.replicas again
            phases.flowing()
            cluster.start(first)
            return at

        phases.run("below_min_isr", below_min_isr, killed=[first, second])
        phases.rows["below_min_isr"]["while_one_node"] = stalled
        for s in streams.values():
            s.stop_input.set()
        seen = {}
        for g, s in streams.items():
            assert s.producer is not None
            s.producer.join(180)
            n_sent = s.sent[0] if s.sent else 0
            assert n_sent > 0, f"{g}: the input producer failed"
            seen[g] = s.tail.wait_all(s.ids[:n_sent], timeout=180, alive=[s.worker])
        phases.count(samplers)
    finally:
        for sampler in samplers.values():
            sampler.close()
        for s in streams.values():
            s.stop_input.set()
            if s.producer is not None:
                s.producer.join(180)
            s.worker.stop()
            s.tail.close()
    results: dict[str, dict[str, Any]] = {}
    for g, s in streams.items():
        sent = s.ids[: s.sent[0]]
        counts = seen[g]
        results[g] = {
            "events_sent": len(sent),
            "lost": len(set(sent) - set(counts)),
            "duplicates": sum(c - 1 for c in counts.values()),
            "error_lines": sum(" ERROR " in line for line in s.worker.text().splitlines()),
        }
    figures(library=library, **results, **phases.rows)
    for g, s in streams.items():
        assert s.worker.proc is not None and s.worker.proc.returncode == 0, s.worker.text()[-4000:]
        assert results[g]["lost"] == 0, f"{g}: events lost"
        assert stalled[g]["published_while_one_node"] == 0, f"{g}: published below min ISR"
        assert stalled[g]["failures_counted"] > 0, f"{g}: the stall was not counted"
        assert results[g]["error_lines"] > 0, f"{g}: the stall was not logged"
    assert results["exactly_once"]["duplicates"] == 0


def _coordinators_exist(cluster: Cluster) -> None:
    """``__consumer_offsets`` and ``__transaction_state`` made (the first group and the first
    transactional producer make them), so that coordinators can be looked up before a worker."""
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": unique("p")})
    producer.init_transactions(60)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": unique("probe")})
    consumer.committed([], timeout=60)  # looks its coordinator up
    consumer.close()
    wait_for(
        lambda: cluster.in_sync([OFFSETS, TRANSACTIONS]), timeout=60, what="coordinators in sync"
    )


def _group_apart_from_its_transactions(cluster: Cluster) -> str | None:
    """A new group id whose coordinator is not its transactional id's coordinator, or None.

    After the other test's kills one node may lead every partition of both internal topics: the
    preferred leaders are elected back first, and the group is chosen once every partition is
    described as led by its preferred replica (the first of its replicas), where leaders stay.
    Chosen by leaders described before that, a group's two coordinators could come together
    later (the election still under way, or the brokers' own rebalance, every 5 min): seen once
    in a fresh clone's run."""
    from confluent_kafka import ElectionType, KafkaException
    from confluent_kafka import TopicPartition as RdTopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})

    def elected() -> bool:
        if cluster.preferred_lead([OFFSETS, TRANSACTIONS]):
            return True
        parts = cluster.partitions([OFFSETS, TRANSACTIONS])
        with contextlib.suppress(KafkaException):  # "election not needed" where preferred
            admin.elect_leaders(
                ElectionType.PREFERRED,
                [RdTopicPartition(p["topic"], p["partition_index"]) for p in parts],
            ).result(30)
        return False

    wait_for(elected, timeout=120, interval=1.0, what="the preferred leaders")
    for _ in range(200):
        group = unique("cluster-eos-gc")
        if cluster.coordinator(OFFSETS, group, preferred=True) != cluster.coordinator(
            TRANSACTIONS, f"streamfuse-{group}-0", preferred=True
        ):
            return group
    return None


def test_exactly_once_group_coordinator_killed_under_spanning_transactions(
    cluster: Cluster,
    trained_store: Path,
    test_rows: np.ndarray,
    tmp_path: Path,
    figures: Callable[..., None],
) -> None:
    """confluent-kafka, ``exactly_once`` with transactions spanning 100 ms: SIGKILL the node
    that coordinates the worker's group but not its transactions, and keep it down until the
    worker publishes again (librdkafka's ``send_offsets_to_transaction`` may wait for a dead
    coordinator regardless of its timeout: the call is bounded by ``kafka.watchdog_s`` and the
    producer replaced). Then the node returns: 0 lost, 0 duplicates read_committed."""
    _coordinators_exist(cluster)
    try:
        group = wait_for(
            lambda: _group_apart_from_its_transactions(cluster),
            timeout=60,
            interval=1.0,
            what="a group whose coordinator is not its transaction coordinator",
        )
    except TimeoutError as exc:  # say where the coordinators are (seen once under load)
        leaders = {topic: dict(cluster.leaders([topic])) for topic in (OFFSETS, TRANSACTIONS)}
        raise AssertionError(f"{exc}; partitions led per node: {leaders}") from None
    watchdog_s = 10.0
    topics = Topics(
        input=cluster.create_topic(unique("gcin"), PARTITIONS),
        output=cluster.create_topic(
            unique("gcout"), PARTITIONS, **{"message.timestamp.type": "LogAppendTime"}
        ),
        labels="",
        dead_letter=unique("gcdlq"),
    )
    config = write_config(
        tmp_path / "eos.yaml",
        store=trained_store,
        bootstrap=cluster.bootstrap,
        topics=topics,
        group=group,
        shadows=(),
        kafka={
            "library": "confluent-kafka",
            "processing_guarantee": "exactly_once",
            "transaction_interval_ms": 100,
            "transaction_timeout_ms": 10_000,
            "watchdog_s": watchdog_s,
            "consumer": fast_group("confluent-kafka"),
        },
        batch={"max_events": 200, "max_wait_ms": 20},
    )
    doc = yaml.safe_load(config.read_text())
    doc["topics"].update(labels=None, create=True)
    config.write_text(yaml.safe_dump(doc))
    X = np.resize(test_rows, (MAX_EVENTS, test_rows.shape[1]))
    ids, values = events(X, "gc")
    stream = Stream(
        "exactly_once",
        topics,
        group,
        config,
        ids,
        values,
        WorkerProcess(config, tmp_path / "eos.log").start(),
        Tail(cluster.bootstrap, topics.output, "read_committed"),
    )
    phases = Phases(cluster, {"exactly_once": stream})
    sampler: Sampler | None = None
    down: dict[str, Any] = {}
    try:
        stream.worker.wait_assigned(timeout=120)
        stream.start_input(cluster.bootstrap)
        sampler = Sampler(stream)
        phases.flowing()
        node = cluster.coordinator(OFFSETS, group)
        held = roles(phases, node)
        assert "exactly_once transaction coordinator" not in held, held

        def fault() -> float:
            at = time.time()
            cluster.kill(node)
            phases.flowing(timeout=120)  # published again with the node still dead
            down["resumed_while_down"] = True
            phases.note(f"starting node {node} again")
            cluster.start(node)
            return at

        phases.run("group_coordinator", fault, node=node, roles=held)
        stream.stop_input.set()
        assert stream.producer is not None
        stream.producer.join(180)
        n_sent = stream.sent[0] if stream.sent else 0
        assert n_sent > 0, "the input producer failed"
        seen = stream.tail.wait_all(ids[:n_sent], timeout=180, alive=[stream.worker])
        phases.count({"exactly_once": sampler})
    finally:
        if sampler is not None:
            sampler.close()
        stream.stop_input.set()
        if stream.producer is not None:
            stream.producer.join(180)
        stream.worker.stop()
        stream.tail.close()
    stuck = sum("stuck: " in line for line in stream.worker.text().splitlines())
    lost = len(set(ids[:n_sent]) - set(seen))
    duplicates = sum(c - 1 for c in seen.values())
    figures(
        library="confluent-kafka",
        watchdog_s=watchdog_s,
        events_sent=n_sent,
        lost=lost,
        duplicates=duplicates,
        stuck_call_lines=stuck,
        **phases.rows,
    )
    assert stream.worker.proc is not None and stream.worker.proc.returncode == 0
    assert down.get("resumed_while_down"), "publishing did not resume while the node was down"
    assert lost == 0, "events lost"
    assert duplicates == 0, "published twice under exactly_once"
