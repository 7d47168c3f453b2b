"""Fault tests: they share a broker of their own, which they stop, kill and restart (the
session's broker is shared by every other test and never touched); the cluster tests (of every
module) share a three-node cluster whose nodes they kill and bring back. Both are started once
and stopped after the last test that uses them."""

import time
from collections.abc import Iterator

import pytest

from app.embedded import EmbeddedKafka, EmbeddedKafkaCluster, KafkaDistribution, free_port
from tests.helpers.broker import QUICK_FENCING, last_user
from tests.helpers.cluster import rss_mib
from tests.helpers.streams import QUICK_GROUPS


@pytest.fixture(scope="session")
def fault_broker(
    tmp_path_factory: pytest.TempPathFactory, kafka_distribution: KafkaDistribution
) -> Iterator[EmbeddedKafka]:
    """The fault tests' broker (not the session's), on a fixed free port, started once; its
    groups accept short sessions (stream processors killed or frozen)."""
    broker = EmbeddedKafka(
        tmp_path_factory.mktemp("fault-kafka"),
        port=free_port(),
        distribution=kafka_distribution,
        stop_timeout_s=20,
        overrides={**QUICK_FENCING, **QUICK_GROUPS},
    )
    with broker:
        yield broker


@pytest.fixture
def own_broker(
    fault_broker: EmbeddedKafka, request: pytest.FixtureRequest
) -> Iterator[EmbeddedKafka]:
    """A real broker on a fixed free port, running; the test may `stop()`, `kill()` and
    `start()` it (same port, same data). Shared by the fault tests, each with fresh topics: one
    that left it down gets it started again here, and it stops after the last of them."""
    if not fault_broker.is_running():
        fault_broker.start()
    yield fault_broker
    if last_user(request, "own_broker"):
        fault_broker.stop()


@pytest.fixture(scope="session")
def three_nodes(
    tmp_path_factory: pytest.TempPathFactory, kafka_distribution: KafkaDistribution
) -> Iterator[EmbeddedKafkaCluster]:
    """Three Apache Kafka nodes (each its own JVM) in one KRaft cluster, in fresh folders,
    started once for the cluster tests of every module (each uses fresh topics)."""
    cluster = EmbeddedKafkaCluster(
        tmp_path_factory.mktemp("cluster"),
        distribution=kafka_distribution,
        overrides=QUICK_FENCING,
        stop_timeout_s=20,
    )
    started = time.monotonic()
    with cluster:
        print(
            f"\n[cluster] 3 nodes ready in {time.monotonic() - started:.1f}s; RSS per node: "
            + ", ".join(f"{rss_mib(node.pid):.0f}" for node in cluster.nodes)
            + f" MiB (heap {cluster.nodes[0].heap})"
        )
        yield cluster
        stopping = time.monotonic()
    print(f"\n[cluster] stopped in {time.monotonic() - stopping:.1f}s")


@pytest.fixture
def cluster(
    three_nodes: EmbeddedKafkaCluster, request: pytest.FixtureRequest
) -> Iterator[EmbeddedKafkaCluster]:
    """The three-node cluster with every node up. A test may kill nodes and brings them back
    itself; one that failed halfway left some down, so they are started again here. After the
    last test that uses it the cluster stops, so its JVMs do not idle through the rest."""
    if not three_nodes.is_running():
        three_nodes.start()
    yield three_nodes
    if last_user(request, "cluster"):
        three_nodes.stop()
