"""KafkaProducerClient against the real broker."""

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from app.embedded import EmbeddedKafka, KafkaDistribution, free_port
from app.kafka import (
    KafkaClientError,
    KafkaConnectionError,
    KafkaNotStartedError,
    KafkaProducerClient,
    KafkaProducerConfig,
    KafkaProduceResult,
    KafkaRecordTooLargeError,
    KafkaTimeoutError,
    KafkaUnknownPartitionError,
)
from app.kafka.producer import partition_of_key
from tests.helpers.kafka import read_all, records_in

CreateTopic = Callable[..., Awaitable[str]]

# Recent on purpose: the broker's retention deletes records older than 7 days.
A_MINUTE_AGO_MS = int(time.time() * 1000) - 60_000


async def test_key_headers_partition_timestamp_and_value_survive_a_round_trip(
    producer: KafkaProducerClient, create_topic: CreateTopic, kafka_bootstrap: str
) -> None:
    topic = await create_topic(partitions=3)
    result = await producer.publish(
        topic,
        {"agent": "research", "status": "ready"},
        key="agent-7",
        headers={"trace": "abc", "raw": b"\x00\x01", "empty": None},
        partition=2,
        timestamp_ms=A_MINUTE_AGO_MS,
    )
    assert result is not None
    assert (result.topic, result.partition) == (topic, 2)

    [message] = await read_all(kafka_bootstrap, topic, 1)
    assert message.value == {"agent": "research", "status": "ready"}
    assert message.key == "agent-7"
    assert (message.partition, message.offset) == (2, result.offset)
    assert message.timestamp_ms == A_MINUTE_AGO_MS
    assert message.headers["trace"] == b"abc"
    assert message.headers["raw"] == b"\x00\x01"
    assert message.headers["empty"] is None
    assert message.header("content-type") == "application/json"


async def test_values_decode_as_what_they_were(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    values = [{"a": [1, 2]}, "42", 42, b"\xff\xfe", "plain text", [1, "x"]]
    for value in values:
        await producer.publish(topic, value, key="same-partition")
    messages = await read_all(kafka_bootstrap, topic, len(values))
    # "42" sent as text stays the string "42"; 42 sent as JSON comes back as a number.
    assert [m.value for m in messages] == values


async def test_none_key_means_no_key_and_none_value_is_a_tombstone(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    await producer.publish(topic, None, key="deleted-entity")
    await producer.publish(topic, "v", key=None)
    messages = await read_all(kafka_bootstrap, topic, 2)
    tombstone = next(m for m in messages if m.key == "deleted-entity")
    keyless = next(m for m in messages if m.key is None)
    assert tombstone.value is None
    assert keyless.value == "v"


async def test_keyless_records_spread_over_the_partitions(
    producer: KafkaProducerClient, create_topic: CreateTopic, kafka_bootstrap: str
) -> None:
    topic = await create_topic(partitions=3)
    for i in range(60):
        # One at a time: aiokafka picks a partition per batch for keyless records.
        await producer.publish(topic, f"event-{i}")
    messages = await read_all(kafka_bootstrap, topic, 60)
    assert len({m.partition for m in messages}) >= 2


async def test_a_wait_false_failure_is_observable(
    producer: KafkaProducerClient, create_topic: CreateTopic
) -> None:
    # The topic accepts at most 1 kB per batch: the broker refuses this record.
    topic = await create_topic(partitions=1, configs={"max.message.bytes": "1024"})
    outcome: asyncio.Future[tuple[KafkaProduceResult | None, KafkaClientError | None]]
    outcome = asyncio.get_running_loop().create_future()

    returned = await producer.publish(
        topic,
        os.urandom(8_000),
        wait=False,
        on_delivery=lambda result, error: outcome.set_result((result, error)),
    )

    assert returned is None
    result, error = await asyncio.wait_for(outcome, 30)
    assert result is None
    assert isinstance(error, KafkaClientError)
    assert "too large" in str(error).lower()
    assert producer.stats.failed == 1
    assert producer.stats.recent_failures[-1].topic == topic
    assert producer.stats.pending == 0


async def test_wait_false_success_reaches_the_callback(
    producer: KafkaProducerClient, topic: str
) -> None:
    outcome: asyncio.Future[KafkaProduceResult | None] = asyncio.get_running_loop().create_future()
    await producer.publish(
        topic, "x", wait=False, on_delivery=lambda result, _: outcome.set_result(result)
    )
    result = await asyncio.wait_for(outcome, 30)
    assert result is not None
    assert result.topic == topic
    await producer.flush(timeout_s=10)
    assert producer.stats.delivered == 1
    assert producer.stats.pending == 0


async def test_publish_json_encodes_even_a_string(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    await producer.publish_json(topic, "42")
    [message] = await read_all(kafka_bootstrap, topic, 1)
    assert message.value == "42"
    assert message.header("content-type") == "application/json"


async def test_ping_and_close(kafka_bootstrap: str) -> None:
    client = KafkaProducerClient(config=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap))
    assert not await client.ping()
    await client.start()
    assert await client.ping()
    await client.close()
    await client.close()
    assert not client.started
    with pytest.raises(KafkaNotStartedError):
        await client.publish("t", "v")


async def test_start_without_a_broker_raises_the_library_error() -> None:
    client = KafkaProducerClient(
        config=KafkaProducerConfig(
            bootstrap_servers=f"127.0.0.1:{free_port()}", request_timeout_ms=2000
        )
    )
    with pytest.raises(KafkaConnectionError):
        await client.start()
    await client.close()


async def test_unit_publish_before_start_raises() -> None:
    with pytest.raises(KafkaNotStartedError, match="start"):
        await KafkaProducerClient().publish("t", "v")


async def test_unit_an_unknown_keyword_is_refused_before_anything_is_sent() -> None:
    client = KafkaProducerClient()
    for call in (client.send, client.queue, client.publish, client.publish_json):
        with pytest.raises(TypeError, match="unexpected keyword argument 'keys'"):
            await call("t", "v", keys="k")  # type: ignore[call-arg]
    assert client.stats.sent == 0


async def test_a_record_refused_before_sending_is_counted_once(
    kafka_bootstrap: str, topic: str
) -> None:
    config = KafkaProducerConfig(
        bootstrap_servers=kafka_bootstrap, extra={"max_request_size": 1024}
    )
    async with KafkaProducerClient(config=config) as client:
        with pytest.raises(KafkaClientError, match="too large"):
            await client.publish(topic, os.urandom(4096))
        assert (client.stats.sent, client.stats.failed, client.stats.pending) == (1, 1, 0)


async def test_a_partition_the_topic_does_not_have_is_refused_by_name(
    producer: KafkaProducerClient, create_topic: Any
) -> None:
    topic = await create_topic(partitions=2)
    with pytest.raises(KafkaUnknownPartitionError, match="no partition 7"):
        await producer.publish(topic, "x", partition=7)
    assert producer.stats.sent == 0


async def test_timeout_s_bounds_queuing_too_while_the_broker_is_away(
    tmp_path: Path, kafka_distribution: KafkaDistribution
) -> None:
    broker = EmbeddedKafka(tmp_path / "kafka", distribution=kafka_distribution).start()
    try:
        config = KafkaProducerConfig(bootstrap_servers=broker.bootstrap_servers)
        client = KafkaProducerClient(config=config)
        await client.start()
        try:
            await client.publish("away", b"first", key="k")  # the topic's metadata is known
            await asyncio.to_thread(broker.stop)
            # The producer holds about one batch per partition while the broker is gone (1 MiB,
            # its max_batch_size: 64 of these records); then queuing waits for room, and
            # timeout_s ends that wait.
            outcomes: list[str] = []
            for _ in range(200):
                try:
                    async with asyncio.timeout(5):  # a hang would fail here, not block the suite
                        await client.publish(
                            "away", b"x" * 16384, key="k", wait=False, timeout_s=0.5
                        )
                except KafkaTimeoutError as exc:
                    outcomes.append(str(exc))
                    break
                outcomes.append("queued")
            assert "could not queue" in outcomes[-1], outcomes[-3:]
            assert client.stats.pending == outcomes.count("queued")
        finally:
            # The broker stays away: what is queued cannot be flushed, so do not wait the
            # default 5 s for it.
            await client.close(timeout_s=0.1)
    finally:
        broker.stop()


async def test_queue_then_wait_is_publish_in_two_halves(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    delivery = await producer.queue(topic, {"n": 1}, key="k", headers={"trace": "t"})
    assert delivery.topic == topic
    assert producer.stats.sent == 1
    result = await delivery.wait()
    assert delivery.done()
    assert delivery.outcome() == (result, None)
    told: list[tuple[KafkaProduceResult | None, KafkaClientError | None]] = []
    delivery.add_done_callback(lambda result, error: told.append((result, error)))
    await asyncio.sleep(0)  # a callback added once settled runs soon, as asyncio's do
    assert told == [(result, None)]
    [message] = await read_all(kafka_bootstrap, topic, 1)
    assert (message.partition, message.offset) == (result.partition, result.offset)
    assert message.value == {"n": 1}
    assert message.headers["trace"] == b"t"
    assert message.header("content-type") == "application/json"


async def test_a_wait_past_the_queue_deadline_raises_and_the_record_still_arrives(
    kafka_bootstrap: str, topic: str
) -> None:
    # The producer holds each batch 3 s before sending it: longer than the deadline.
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, linger_ms=3000)
    async with KafkaProducerClient(config=config) as client:
        delivery = await client.queue(topic, "late", key="k", timeout_s=0.5)
        # wait() with no argument waits for the rest of the deadline queue() was given.
        with pytest.raises(KafkaTimeoutError, match=r"within 0\.5s; it may still be delivered"):
            await delivery.wait()
        assert not delivery.done()  # giving up waiting did not cancel the delivery
        result = await delivery.wait(30)
        assert client.stats.delivered == 1
    assert await records_in(kafka_bootstrap, topic) == 1
    [message] = await read_all(kafka_bootstrap, topic, 1)
    assert (message.partition, message.offset) == (result.partition, result.offset)


async def test_queue_past_its_deadline_raises_and_nothing_was_sent(
    kafka_bootstrap: str, create_topic: CreateTopic
) -> None:
    topic = await create_topic(partitions=1)
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap)
    async with KafkaProducerClient(config=config) as client:
        # A fresh client knows nothing of the topic yet: queuing waits for its metadata, and a
        # deadline of 0 s ends that wait.
        with pytest.raises(KafkaTimeoutError, match=r"could not queue .* nothing was sent"):
            await client.queue(topic, "never", timeout_s=0)
        assert (client.stats.sent, client.stats.failed, client.stats.pending) == (1, 1, 0)
        await client.flush(timeout_s=10)
    assert await records_in(kafka_bootstrap, topic) == 0


async def test_partition_of_key_is_where_the_producer_puts_a_key(
    producer: KafkaProducerClient, create_topic: Callable[..., Awaitable[str]]
) -> None:
    topic = await create_topic(partitions=7)
    for n in range(40):
        key = f"user-{n}-é"
        result = await producer.publish(topic, {"n": n}, key=key)
        assert result is not None
        assert result.partition == partition_of_key(key, list(range(7)))
    with pytest.raises(ValueError, match="without a key"):
        partition_of_key(None, [0, 1])


async def test_check_size_refuses_exactly_what_send_refuses_for_its_size(
    kafka_bootstrap: str, topic: str
) -> None:
    config = KafkaProducerConfig(
        bootstrap_servers=kafka_bootstrap, extra={"max_request_size": 4096}
    )
    headers = {"rg-event-id": "e", "content-type": "application/json"}
    async with KafkaProducerClient(config=config) as client:
        # The largest value check_size lets through, then one byte more.
        fits = max(n for n in range(3900, 4096) if _fits(client, b"v" * n, headers))
        for size, allowed in ((fits, True), (fits + 1, False)):
            value = b"v" * size
            if allowed:
                client.check_size(value, key="k", headers=headers)
                await (await client.send(topic, value, key="k", headers=headers))
            else:
                with pytest.raises(KafkaRecordTooLargeError, match="max_request_size"):
                    client.check_size(value, key="k", headers=headers)
                with pytest.raises(KafkaRecordTooLargeError):
                    await client.send(topic, value, key="k", headers=headers)
    assert await records_in(kafka_bootstrap, topic) == 1


def _fits(client: KafkaProducerClient, value: bytes, headers: dict[str, str]) -> bool:
    try:
        client.check_size(value, key="k", headers=headers)
    except KafkaRecordTooLargeError:
        return False
    return True
