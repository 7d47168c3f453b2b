"""`broker --nodes 3`: a three-node KRaft cluster, each node its own JVM, as a real process; and
how the command and `EmbeddedKafkaCluster` lay the nodes out (no broker)."""

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli import build_parser
from app.cli.broker import SINGLE_NODE_HEAP, embedded_kafka
from app.embedded import EmbeddedKafka, EmbeddedKafkaCluster, KafkaDistribution
from app.embedded.broker import live_brokers
from app.embedded.cluster import CLUSTER_HEAP
from tests.helpers.broker import java_pids_using
from tests.helpers.processes import Running


def properties(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_broker_nodes_3_prints_every_node_outlives_one_and_stops_the_rest_cleanly(
    tmp_path: Path, kafka_distribution: KafkaDistribution
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RG_")}
    env["RG_EMBEDDED_CACHE_DIR"] = str(kafka_distribution.root.parent)
    data_dir = tmp_path / "data"
    started = time.monotonic()
    broker = Running(
        ["broker", "--nodes", "3", "--port", "0", "--data-dir", str(data_dir)],
        cwd=tmp_path,
        env=env,
    )
    try:
        line = broker.wait_for_line("bootstrap=")
        ready_s = time.monotonic() - started
        assert re.fullmatch(r"bootstrap=(127\.0\.0\.1:\d+,){2}127\.0\.0\.1:\d+", line), line
        bootstrap = line.removeprefix("bootstrap=")
        # Every node answers on its own, and each one's metadata lists all three.
        for address in bootstrap.split(","):
            assert live_brokers(address) == 3, address
        nodes = [data_dir / f"node-{n}" for n in (1, 2, 3)]
        assert all(java_pids_using(node) for node in nodes)
        metas = [properties(node / "kafka-logs" / "meta.properties") for node in nodes]
        assert [meta["node.id"] for meta in metas] == ["1", "2", "3"]
        assert {meta["cluster.id"] for meta in metas} == {
            (data_dir / "cluster.id").read_text().strip()
        }

        # A node killed (to watch a failover) is logged; the command and the others go on.
        (pid,) = java_pids_using(nodes[1])
        os.kill(pid, signal.SIGKILL)
        error = next(line for line in iter_lines(broker) if "node 2" in line)
        assert "exited; the others go on" in error
        assert broker.process.poll() is None
        assert live_brokers(bootstrap.split(",")[0]) >= 2

        stopping = time.monotonic()
        assert broker.stop(signal.SIGTERM) == 0
        stopped_s = time.monotonic() - stopping
    finally:
        broker.close()
    print(
        f"\n[cluster] broker --nodes 3: bootstrap after {ready_s:.1f}s, stopped in {stopped_s:.1f}s"
    )
    assert all(java_pids_using(node) == [] for node in nodes)
    for node in (nodes[0], nodes[2]):
        log = (node / "broker.log").read_text()
        # Kafka's controlled shutdown, not a kill after the stop timeout.
        assert "Beginning controlled shutdown" in log
        assert "shut down completed" in log


def iter_lines(process: Running, timeout_s: float = 30) -> Iterator[str]:
    """The process's next output lines, as they come, for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        yield process.wait_for_line("", timeout_s=deadline - time.monotonic())


def test_unit_nodes_1_is_the_single_broker_of_before(tmp_path: Path) -> None:
    args = build_parser().parse_args(["broker", "--data-dir", str(tmp_path)])
    broker = embedded_kafka(args, tmp_path)
    assert isinstance(broker, EmbeddedKafka)
    assert (broker.port, broker.heap, broker.voters) == (9092, SINGLE_NODE_HEAP, {})


def test_unit_nodes_3_take_consecutive_client_ports_and_share_one_quorum(tmp_path: Path) -> None:
    args = build_parser().parse_args(["broker", "--nodes", "3", "--port", "19092"])
    cluster = embedded_kafka(args, tmp_path)
    assert isinstance(cluster, EmbeddedKafkaCluster)
    assert cluster.bootstrap_servers == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
    assert [node.node_id for node in cluster.nodes] == [1, 2, 3]
    assert [node.data_dir for node in cluster.nodes] == [
        tmp_path.resolve() / f"node-{n}" for n in (1, 2, 3)
    ]
    voters = cluster.nodes[0].voters
    assert sorted(voters) == [1, 2, 3]
    assert all(node.voters == voters for node in cluster.nodes)
    assert [node.controller_port for node in cluster.nodes] == [voters[1], voters[2], voters[3]]
    assert {node.heap for node in cluster.nodes} == {CLUSTER_HEAP}


@pytest.mark.parametrize("nodes", ["0", "-1", "10"])
def test_unit_a_node_count_out_of_range_is_a_usage_error(
    nodes: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["broker", "--nodes", nodes])
    assert exited.value.code == 2
    assert "--nodes takes 1 to 9" in capsys.readouterr().err
