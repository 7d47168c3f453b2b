"""Unit tests of the broker's generated configuration (no broker)."""

import base64
from pathlib import Path

from app.embedded.config import log4j_properties, new_cluster_id, server_properties


def parse(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_server_properties_listen_on_the_given_ports_only() -> None:
    props = parse(
        server_properties(host="127.0.0.1", port=1111, controller_port=2222, log_dir=Path("/d"))
    )
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:1111,CONTROLLER://127.0.0.1:2222"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1111"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:2222"
    assert props["process.roles"] == "broker,controller"
    assert props["log.dirs"] == "/d"
    assert props["offsets.topic.replication.factor"] == "1"


def test_overrides_replace_defaults() -> None:
    text = server_properties(
        host="127.0.0.1",
        port=1,
        controller_port=2,
        log_dir=Path("/d"),
        overrides={"num.partitions": "7", "message.max.bytes": "5"},
    )
    props = parse(text)
    assert props["num.partitions"] == "7"
    assert props["message.max.bytes"] == "5"


def test_cluster_id_is_16_bytes_base64url_without_padding() -> None:
    first, second = new_cluster_id(), new_cluster_id()
    assert first != second
    assert "=" not in first
    assert len(base64.urlsafe_b64decode(first + "==")) == 16


def test_log4j_writes_to_a_bounded_file(tmp_path: Path) -> None:
    text = log4j_properties(tmp_path / "broker.log")
    assert f"File={tmp_path / 'broker.log'}" in text
    assert "MaxFileSize" in text


def test_cluster_ids_never_start_with_a_dash() -> None:
    # One random id in 64 would; the storage tool then takes it for an option and fails.
    assert not any(new_cluster_id().startswith("-") for _ in range(2000))


def test_a_cluster_node_lists_the_whole_quorum_and_replicates_internal_topics() -> None:
    props = parse(
        server_properties(
            host="127.0.0.1",
            port=1111,
            controller_port=2222,
            log_dir=Path("/d"),
            node_id=2,
            voters={1: 2221, 2: 2222, 3: 2223},
        )
    )
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:2221,2@127.0.0.1:2222,3@127.0.0.1:2223"
    )
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["default.replication.factor"] == "3"
    # The service, not the broker, sets min.insync.replicas=2 on the audit topic.
    assert "min.insync.replicas" not in props


def test_a_single_node_has_no_cluster_settings() -> None:
    props = parse(
        server_properties(host="127.0.0.1", port=1111, controller_port=2222, log_dir=Path("/d"))
    )
    assert "default.replication.factor" not in props
    assert props["transaction.state.log.min.isr"] == "1"
