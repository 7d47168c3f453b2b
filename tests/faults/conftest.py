"""Fault tests: each gets a broker of its own, which it stops and restarts (the session's broker
is shared by every other test and never touched); the cluster tests share a three-node cluster
whose nodes they kill and bring back."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.embedded import EmbeddedKafka, EmbeddedKafkaCluster, KafkaDistribution, free_port
from tests.helpers.cluster import rss_mib


@pytest.fixture
def own_broker(tmp_path: Path, kafka_distribution: KafkaDistribution) -> Iterator[EmbeddedKafka]:
    """A real broker on a fixed free port, started; the test may `stop()` and `start()` it
    (same port, same data)."""
    broker = EmbeddedKafka(
        tmp_path / "kafka",
        port=free_port(),
        distribution=kafka_distribution,
        stop_timeout_s=20,
    )
    with broker:
        yield broker


@pytest.fixture(scope="module")
def three_nodes(
    tmp_path_factory: pytest.TempPathFactory, kafka_distribution: KafkaDistribution
) -> Iterator[EmbeddedKafkaCluster]:
    """Three Apache Kafka nodes (each its own JVM) in one KRaft cluster, in fresh folders, for
    the tests of a module."""
    cluster = EmbeddedKafkaCluster(
        tmp_path_factory.mktemp("cluster"), distribution=kafka_distribution, stop_timeout_s=20
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
def cluster(three_nodes: EmbeddedKafkaCluster) -> EmbeddedKafkaCluster:
    """The module's three-node cluster with every node up. A test may kill nodes and brings
    them back itself; one that failed halfway left some down, so they are started again here."""
    if not three_nodes.is_running():
        three_nodes.start()
    return three_nodes
