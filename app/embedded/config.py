"""The files a single-node KRaft Apache Kafka needs: `server.properties` and its log4j setup."""

import base64
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

NODE_ID = 1


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
    overrides: Mapping[str, str] | None = None,
) -> str:
    """Render a combined broker+controller configuration listening on `host` only."""
    settings: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{host}:{controller_port}",
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
    settings.update(overrides or {})
    lines = ["# Written by ractogateway-kafka on every start; edits are overwritten."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return os.linesep.join(lines) + os.linesep


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
