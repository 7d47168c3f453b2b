"""The files a KRaft Apache Kafka node needs: `server.properties` and its log4j setup.

One node (`make run`, the test suite's broker) is broker and controller at once, alone in its
quorum. A node of a cluster (`EmbeddedKafkaCluster`) is the same combined node with its own
`node.id`, and the controller quorum lists every node: a majority of them must be up for the
cluster to change anything (elect a leader, shrink an in-sync replica set).
"""

import base64
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

NODE_ID = 1
# Replicas of the internal topics (consumer offsets, transaction state) on a cluster, and how
# many must acknowledge a write to them: the same rule the service applies to its audit topic.
INTERNAL_REPLICATION = 3
INTERNAL_MIN_INSYNC = 2


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding, never starting with
    '-' (the storage tool would read such an id as an option; Kafka's own ids avoid it too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(
    *,
    host: str,
    port: int,
    controller_port: int,
    log_dir: Path,
    node_id: int = NODE_ID,
    voters: Mapping[int, int] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """Render a combined broker+controller configuration listening on `host` only.

    `voters` maps every node id of the cluster to its controller port (default: this node
    alone). With more than one voter the internal topics are replicated to up to three nodes,
    so that losing one loses no committed offset or transaction state."""
    quorum = dict(voters) if voters else {node_id: controller_port}
    settings: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": ",".join(
            f"{node}@{host}:{port}" for node, port in sorted(quorum.items())
        ),
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "3",
        "auto.create.topics.enable": "true",
        # One node: every internal topic must fit on it, and small ones start faster.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        # Nobody else is going to join the group: do not wait 3 s for them.
        "group.initial.rebalance.delay.ms": "0",
    }
    if len(quorum) > 1:
        settings.update(cluster_properties(len(quorum)))
    settings.update(overrides or {})
    lines = ["# Written by ractogateway-kafka on every start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return os.linesep.join(lines) + os.linesep


def cluster_properties(nodes: int) -> dict[str, str]:
    """What a node of a cluster of `nodes` sets beyond a single node's configuration."""
    replication = min(INTERNAL_REPLICATION, nodes)
    min_insync = INTERNAL_MIN_INSYNC if replication >= INTERNAL_REPLICATION else 1
    return {
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_insync),
        # Topics created without a replication factor (auto-created ones) survive a node too.
        # min.insync.replicas stays the broker's default (1): the service sets 2 on the audit
        # topic itself, and a test can tell the two apart.
        "default.replication.factor": str(replication),
    }


def log4j_properties(log_file: Path) -> str:
    """Broker logs go to a size-bounded rolling file, so a long `make run` cannot fill the disk."""
    return f"""\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File={log_file}
log4j.appender.file.MaxFileSize=10MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.zookeeper=WARN
"""
