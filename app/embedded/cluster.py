"""A KRaft cluster of Apache Kafka nodes on loopback, each its own JVM: `broker --nodes 3`, and
the fault tests that kill a node and bring it back.

Every node is broker and controller at once (`EmbeddedKafka` with a `node.id` and the whole
quorum in `controller.quorum.voters`), so three nodes make a quorum that survives one loss;
with two down the last one still answers, but nothing can change leaders or in-sync replicas.

Layout of the data folder, kept across restarts:

    DATA_DIR/cluster.id      the cluster id every node's storage is formatted with
    DATA_DIR/node-1/ ...     one `EmbeddedKafka` data folder per node (see app/embedded/broker.py)

Ports are chosen once, when the cluster object is made, and kept for its life: a controller's
address is part of every node's configuration, so a node that comes back after `kill()` must
come back where the others expect it.
"""

import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from app.embedded.broker import EmbeddedKafka, live_brokers
from app.embedded.config import new_cluster_id
from app.embedded.distribution import KafkaDistribution
from app.embedded.errors import EmbeddedKafkaError
from app.embedded.ports import free_port

logger = logging.getLogger(__name__)

# Small enough that three nodes, the service and the tests fit a 2-core machine beside others;
# measured RSS per node in docs/cluster.md.
CLUSTER_HEAP = "320m"

T = TypeVar("T")


class EmbeddedKafkaCluster:
    """`nodes` Apache Kafka nodes forming one KRaft cluster, owned by this process.

    `start()` prepares (formats) the nodes in parallel, starts their JVMs together (a node
    cannot be ready before a majority of the quorum is up) and returns once every node serves
    clients and the metadata lists all of them. `stop()` sends every node SIGTERM at once and
    waits for their clean shutdowns. `nodes[i].kill()` and `nodes[i].start()` take one node away
    and bring it back.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        nodes: int = 3,
        port: int = 0,
        distribution: KafkaDistribution | None = None,
        heap: str = CLUSTER_HEAP,
        overrides: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        if nodes < 1:
            raise EmbeddedKafkaError(f"a cluster needs at least one node, not {nodes}")
        self.data_dir = Path(data_dir).resolve()
        self.distribution = distribution or KafkaDistribution()
        self.startup_timeout_s = startup_timeout_s
        # Client ports PORT, PORT+1, ... when given (9092, 9093, 9094), else free ones.
        ports = [port + i if port else free_port() for i in range(nodes)]
        voters = {node_id: free_port() for node_id in range(1, nodes + 1)}
        self.nodes = [
            EmbeddedKafka(
                self.data_dir / f"node-{node_id}",
                port=client_port,
                controller_port=voters[node_id],
                distribution=self.distribution,
                heap=heap,
                overrides=overrides,
                startup_timeout_s=startup_timeout_s,
                stop_timeout_s=stop_timeout_s,
                node_id=node_id,
                voters=voters,
            )
            for node_id, client_port in zip(voters, ports, strict=True)
        ]

    @property
    def bootstrap_servers(self) -> str:
        """`127.0.0.1:P1,127.0.0.1:P2,...`: every node, so a client finds the cluster with any
        one of them down."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> EmbeddedKafka:
        """The node with Kafka's `node.id` `node_id` (1, 2, ...)."""
        return self.nodes[node_id - 1]

    def start(self) -> Self:
        """Start every node and wait until each serves clients and sees all the others."""
        cluster_id = self._cluster_id()
        for node in self.nodes:
            node.cluster_id = cluster_id
        waiting = [node for node in self.nodes if not node.is_running()]
        try:
            # Formatting is a JVM start of its own (~2 s): all at once.
            configs = _in_parallel([node.prepare for node in waiting])
            # Launched here, not in the pool: a JVM is told to die with the thread that started
            # it, and the pool's threads end before the cluster does.
            for node, config in zip(waiting, configs, strict=True):
                node.launch(config)
            _in_parallel([node.wait_until_ready for node in waiting])
            self.wait_for_all()
        except BaseException:
            self.stop()
            raise
        logger.info("Apache Kafka cluster ready at %s", self.bootstrap_servers)
        return self

    def wait_for_all(self) -> None:
        """Block until every node's metadata lists every node (a node that just started, or came
        back, may still see fewer for a moment): then a client may start from any of them."""
        deadline = time.monotonic() + self.startup_timeout_s
        expected = len(self.nodes)
        while (seen := min(live_brokers(n.bootstrap_servers) for n in self.nodes)) < expected:
            if time.monotonic() > deadline:
                raise EmbeddedKafkaError(
                    f"a node of the cluster lists {seen} of {expected} nodes after "
                    f"{self.startup_timeout_s:.0f} s; see {self.data_dir}/node-*/broker.log"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        """Shut every node down cleanly and at once (each does Kafka's controlled shutdown;
        one after another, the last ones would wait for a quorum that is already gone)."""
        _in_parallel([node.stop for node in self.nodes])

    def is_running(self) -> bool:
        """True while every node's JVM is alive."""
        return all(node.is_running() for node in self.nodes)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _cluster_id(self) -> str:
        # Kept beside the nodes' folders: a node formatted later (or again, its folder lost)
        # must join the same cluster.
        path = self.data_dir / "cluster.id"
        if path.is_file():
            return path.read_text(encoding="ascii").strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = new_cluster_id()
        path.write_text(cluster_id + "\n", encoding="ascii")
        return cluster_id


def _in_parallel(calls: list[Callable[[], T]]) -> list[T]:
    """Run `calls` in threads; their results in order, or the first error once all ended."""
    if not calls:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        concurrent.futures.wait(futures)
        return [future.result() for future in futures]
