"""`broker` and `run`: the embedded Apache Kafka, alone or with the service."""

import argparse
import tempfile
import threading
from pathlib import Path

from app.cli.common import EPILOG, exit_on_sigterm, logger, stop_requested
from app.embedded import EmbeddedKafka, EmbeddedKafkaCluster, KafkaDistribution
from app.embedded.cluster import CLUSTER_HEAP
from app.logs import configure_logging

SINGLE_NODE_HEAP = "512m"


def kafka_distribution(args: argparse.Namespace) -> KafkaDistribution:
    return KafkaDistribution(args.cache_dir)


def embedded_kafka(
    args: argparse.Namespace, data_dir: Path
) -> EmbeddedKafka | EmbeddedKafkaCluster:
    """One node (`--nodes 1`, the default: what `broker` always was) or a cluster of them."""
    distribution = kafka_distribution(args)
    if args.nodes == 1:
        heap = args.heap or SINGLE_NODE_HEAP
        return EmbeddedKafka(data_dir, port=args.port, distribution=distribution, heap=heap)
    return EmbeddedKafkaCluster(
        data_dir,
        nodes=args.nodes,
        port=args.port,
        distribution=distribution,
        heap=args.heap or CLUSTER_HEAP,
    )


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the embedded Apache Kafka in the foreground until SIGTERM or Ctrl-C."""
    configure_logging(args.log_level, "text")
    distribution = kafka_distribution(args)
    if args.download_only:
        logger.info("Apache Kafka %s jars ready in %s", distribution.version, distribution.ensure())
        return 0
    stop = stop_requested()
    with tempfile.TemporaryDirectory(prefix="rg-kafka-") as scratch:
        broker = embedded_kafka(args, args.data_dir or Path(scratch))
        logs = (
            broker.log_file
            if isinstance(broker, EmbeddedKafka)
            else broker.data_dir / "node-*" / "broker.log"
        )
        try:
            broker.start()
            print(f"bootstrap={broker.bootstrap_servers}", flush=True)
            logger.info("broker log: %s; SIGTERM or Ctrl-C stops it", logs)
            if not _watch(broker, stop):
                logger.error("Apache Kafka exited on its own; see %s", logs)
                return 1
        finally:
            broker.stop()
    logger.info("Apache Kafka stopped")
    return 0


def _watch(broker: EmbeddedKafka | EmbeddedKafkaCluster, stop: threading.Event) -> bool:
    """Wait for `stop`; False when Kafka exited on its own first. A cluster goes on while any
    node runs: a node killed on purpose (to watch a failover) is logged, not fatal."""
    nodes = [broker] if isinstance(broker, EmbeddedKafka) else broker.nodes
    gone: set[int] = set()
    while not stop.wait(0.5):
        for node in nodes:
            if len(nodes) > 1 and node.node_id not in gone and not node.is_running():
                gone.add(node.node_id)
                logger.error(
                    "node %d (%s) exited; the others go on; see %s",
                    node.node_id,
                    node.bootstrap_servers,
                    node.log_file,
                )
        if not any(node.is_running() for node in nodes):
            return False
    return True


def cmd_run(args: argparse.Namespace) -> int:
    """`make run`: the embedded broker (unless RG_KAFKA_BOOTSTRAP_SERVERS is set) and the API."""
    from app.cli.server import check_startup, serve  # noqa: PLC0415 - a cheap parser
    from app.settings import get_settings  # noqa: PLC0415

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    exit_on_sigterm()
    if "kafka_bootstrap_servers" in settings.model_fields_set:
        logger.info("using Kafka at %s", ",".join(settings.kafka_bootstrap_servers))
        serve(settings)
        return 0
    # A port taken or a key unusable is said before a broker is started for nothing.
    check_startup(settings)
    broker = EmbeddedKafka(
        args.data_dir,
        port=args.port,
        distribution=kafka_distribution(args),
        heap=args.heap or SINGLE_NODE_HEAP,
    )
    try:
        logger.info("starting Apache Kafka on 127.0.0.1:%d (data in %s)", args.port, args.data_dir)
        broker.start()
        logger.info("Apache Kafka ready; broker log: %s", broker.log_file)
        serve(settings.model_copy(update={"kafka_bootstrap_servers": [broker.bootstrap_servers]}))
    finally:
        logger.info("stopping Apache Kafka")
        broker.stop()
    return 0


def add_broker_options(
    parser: argparse.ArgumentParser, *, port: int, data_dir: Path | None
) -> None:
    parser.add_argument(
        "--port", type=int, default=port, help=f"client port on 127.0.0.1 (default {port})"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=data_dir,
        metavar="DIR",
        help="broker data folder, kept across restarts"
        + (
            f" (default {data_dir})"
            if data_dir
            else " (default: a temporary folder, removed on exit)"
        ),
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the Apache Kafka jars are downloaded to (default $RG_EMBEDDED_CACHE_DIR "
        "or ~/.cache/ractogateway-kafka)",
    )
    parser.add_argument(
        "--heap",
        default=None,
        help=f"JVM maximum heap of each node (default {SINGLE_NODE_HEAP}; {CLUSTER_HEAP} per node "
        "of a cluster)",
    )


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `broker` and `run`."""
    broker = commands.add_parser(
        "broker",
        help="run an embedded Apache Kafka (one node, or a cluster) in the foreground",
        description="Run a real Apache Kafka (KRaft) on 127.0.0.1: one node, or with --nodes N a "
        "cluster of N nodes, each its own JVM, ports and data folder (DIR/node-1, ...). Downloads "
        "the jars through Maven on first use (needs java and mvn). Prints "
        "'bootstrap=127.0.0.1:PORT[,127.0.0.1:PORT...]' once clients can connect to every node; "
        "SIGTERM or Ctrl-C shuts them all down cleanly.",
    )
    add_broker_options(broker, port=9092, data_dir=None)
    broker.add_argument(
        "--nodes",
        type=_node_count,
        default=1,
        metavar="N",
        help="nodes of the KRaft cluster, each broker and controller; client ports PORT, "
        "PORT+1, ... (0: free ports) (default 1; 3 survives the loss of one node)",
    )
    broker.add_argument(
        "--log-level", default="INFO", help="log level of this command (default INFO)"
    )
    broker.add_argument(
        "--download-only",
        action="store_true",
        help="download the Apache Kafka jars if missing, then exit",
    )
    broker.set_defaults(func=cmd_broker)

    run = commands.add_parser(
        "run",
        help="embedded broker + HTTP API together (what `make run` does)",
        description="Start the embedded Apache Kafka, wait until it is ready, then serve the API. "
        "With RG_KAFKA_BOOTSTRAP_SERVERS set, serve against those brokers instead. "
        "Ctrl-C or SIGTERM stops both.",
        epilog=EPILOG,
    )
    add_broker_options(run, port=9092, data_dir=Path("var/kafka"))
    run.set_defaults(func=cmd_run)


def _node_count(text: str) -> int:
    nodes = int(text)
    if not 1 <= nodes <= 9:
        raise argparse.ArgumentTypeError(f"--nodes takes 1 to 9, not {nodes}")
    return nodes
