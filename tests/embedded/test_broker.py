"""The embedded Apache Kafka: a real broker started, used, stopped and restarted."""

import os
import socket
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from app.embedded import EmbeddedKafka, EmbeddedKafkaError, KafkaDistribution
from tests.helpers.broker import java_pids_using


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        while len(values) < count:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"no records within 10 s; got {len(values)} of {count}"
            values += [record.value for records in batches.values() for record in records]
        return values
    finally:
        await consumer.stop()


def assert_gone(pid: int | None, data_dir: Path) -> None:
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert java_pids_using(data_dir) == []


async def test_starts_on_free_ports_round_trips_and_stops_without_leftovers(
    tmp_path: Path, kafka_distribution: KafkaDistribution, topic: str
) -> None:
    broker = EmbeddedKafka(tmp_path / "kafka", distribution=kafka_distribution)
    broker.start()
    try:
        assert broker.port > 0
        assert broker.controller_port > 0
        assert broker.port != broker.controller_port
        assert broker.is_running()
        values = [f"record-{i}".encode() for i in range(5)]
        await produce(broker.bootstrap_servers, topic, values)
        assert await consume(broker.bootstrap_servers, topic, 5) == values
    finally:
        pid = broker.pid
        broker.stop()
    assert not broker.is_running()
    assert_gone(pid, broker.data_dir)
    broker.stop()  # stopping twice is harmless


async def test_restart_on_the_same_data_dir_keeps_earlier_records(
    tmp_path: Path, kafka_distribution: KafkaDistribution, topic: str
) -> None:
    data_dir = tmp_path / "kafka"
    values = [uuid.uuid4().bytes for _ in range(3)]
    with EmbeddedKafka(data_dir, distribution=kafka_distribution) as first:
        await produce(first.bootstrap_servers, topic, values)
    with EmbeddedKafka(data_dir, distribution=kafka_distribution) as second:
        assert await consume(second.bootstrap_servers, topic, 3) == values


@pytest.mark.parametrize("which", ["port", "controller_port"])
def test_a_taken_port_is_named_in_the_error(
    tmp_path: Path, kafka_distribution: KafkaDistribution, which: str
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        broker = EmbeddedKafka(
            tmp_path / "kafka", distribution=kafka_distribution, **{which: taken}
        )
        with pytest.raises(EmbeddedKafkaError, match=rf"port {taken} .*already in use"):
            broker.start()
    assert not broker.is_running()
    assert java_pids_using(broker.data_dir) == []


def test_unit_missing_java_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_distribution: KafkaDistribution
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(EmbeddedKafkaError, match="java not found"):
        EmbeddedKafka(tmp_path / "kafka", distribution=kafka_distribution).start()


def test_invalid_configuration_is_reported_in_one_line(
    tmp_path: Path, kafka_distribution: KafkaDistribution
) -> None:
    broker = EmbeddedKafka(
        tmp_path / "kafka",
        distribution=kafka_distribution,
        overrides={"num.partitions": "not-a-number"},
    )
    with pytest.raises(EmbeddedKafkaError, match="Invalid value not-a-number") as caught:
        broker.start()
    assert "\n" not in str(caught.value)


def test_a_broker_that_dies_while_starting_reports_why(
    tmp_path: Path, kafka_distribution: KafkaDistribution
) -> None:
    # A damaged data folder passes our checks, then makes Kafka exit during start-up: the error
    # must say so at once, not after the start-up timeout.
    log_dir = tmp_path / "kafka" / "kafka-logs"
    log_dir.mkdir(parents=True)
    (log_dir / "meta.properties").write_text("this is not a properties file of Kafka's\n")
    broker = EmbeddedKafka(tmp_path / "kafka", distribution=kafka_distribution)
    with pytest.raises(
        EmbeddedKafkaError, match=r"exited with status .*node ID not found"
    ) as caught:
        broker.start()
    assert "\n" not in str(caught.value)
    assert not broker.is_running()
    assert java_pids_using(broker.data_dir) == []
