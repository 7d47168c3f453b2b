"""KafkaConsumerClient against the real broker: without a group, with one, and decoding."""

import time
import uuid
from typing import Any

import pytest

from app.kafka import (
    KafkaConsumerClient,
    KafkaConsumerConfig,
    KafkaNoGroupError,
    KafkaNotStartedError,
    KafkaProducerClient,
    KafkaSerializationError,
    KafkaUnknownPartitionError,
)
from tests.helpers.kafka import read_all
from tests.helpers.polling import eventually


def consumer_for(bootstrap: str, topic: str, **config: object) -> KafkaConsumerClient:
    return KafkaConsumerClient(
        config=KafkaConsumerConfig(
            **{
                "topics": [topic],
                "bootstrap_servers": bootstrap,
                "auto_offset_reset": "earliest",
                **config,
            }
        )
    )


async def poll_until(consumer: KafkaConsumerClient, count: int) -> list[object]:
    values: list[object] = []
    for _ in range(40):
        values += [m.value for m in await consumer.poll(timeout_ms=500)]
        if len(values) >= count:
            break
    return values


async def test_without_a_group_it_reads_every_partition_and_cannot_commit(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    for i in range(6):
        await producer.publish(topic, f"v{i}", key=f"k{i}")
    async with consumer_for(kafka_bootstrap, topic) as consumer:
        values = await poll_until(consumer, 6)
        assert sorted(values) == [f"v{i}" for i in range(6)]  # type: ignore[type-var]
        with pytest.raises(KafkaNoGroupError, match="group_id"):
            await consumer.commit()


async def test_with_a_group_a_new_consumer_resumes_after_the_committed_offset(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    group = f"group-{uuid.uuid4().hex}"
    for i in range(3):
        await producer.publish(topic, f"first-{i}", key="k")
    async with consumer_for(kafka_bootstrap, topic, group_id=group) as first:
        assert await poll_until(first, 3) == ["first-0", "first-1", "first-2"]
        await first.commit()

    for i in range(2):
        await producer.publish(topic, f"second-{i}", key="k")
    async with consumer_for(kafka_bootstrap, topic, group_id=group) as second:
        assert await poll_until(second, 2) == ["second-0", "second-1"]


async def test_decoding_follows_the_configuration(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    await producer.publish(topic, "42", key="k")  # text, no content-type
    await producer.publish(topic, 42, key="k")  # JSON, marked as such

    auto = await read_all(kafka_bootstrap, topic, 2)
    as_json = await read_all(kafka_bootstrap, topic, 2, value_format="json")
    as_bytes = await read_all(kafka_bootstrap, topic, 2, value_format="bytes")

    assert [m.value for m in auto] == ["42", 42]
    assert [m.value for m in as_json] == [42, 42]
    assert [m.value for m in as_bytes] == [b"42", b"42"]


async def test_json_format_names_a_record_that_is_not_json(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    await producer.publish(topic, "not json")
    with pytest.raises(KafkaSerializationError, match="not valid JSON"):
        await read_all(kafka_bootstrap, topic, 1, value_format="json")


async def test_a_custom_value_deserializer_gets_the_raw_bytes(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    await producer.publish(topic, b"abc")
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic], bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        ),
        value_deserializer=lambda raw: raw[::-1] if raw else raw,
    )
    async with consumer:
        assert await poll_until(consumer, 1) == [b"cba"]


async def test_unit_poll_before_start_raises() -> None:
    consumer = KafkaConsumerClient(config=KafkaConsumerConfig(topics=["t"]))
    with pytest.raises(KafkaNotStartedError):
        await consumer.poll()


async def test_rewind_goes_back_a_number_of_records_per_partition(
    producer: KafkaProducerClient, create_topic: Any, kafka_bootstrap: str
) -> None:
    topic = await create_topic(partitions=2)
    for i in range(10):
        await producer.publish(topic, i, partition=i % 2)
    consumer = consumer_for(kafka_bootstrap, topic, auto_offset_reset="latest")
    async with consumer:
        await consumer.rewind(3)
        values = await poll_until(consumer, 6)
        assert sorted(values) == [4, 5, 6, 7, 8, 9]  # type: ignore[type-var]
        assert await consumer.lag() == {(topic, 0): 0, (topic, 1): 0}


async def test_end_offsets_are_where_each_partition_ends_now(
    producer: KafkaProducerClient, create_topic: Any, kafka_bootstrap: str
) -> None:
    topic = await create_topic(partitions=2)
    for i in range(5):
        await producer.publish(topic, i, partition=0 if i < 3 else 1)
    consumer = consumer_for(kafka_bootstrap, topic, auto_offset_reset="earliest")
    async with consumer:
        assert await consumer.end_offsets() == {(topic, 0): 3, (topic, 1): 2}


async def test_rewind_stops_at_the_beginning(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    await producer.publish(topic, "only", partition=0)
    consumer = consumer_for(kafka_bootstrap, topic, auto_offset_reset="latest")
    async with consumer:
        await consumer.rewind(100)
        assert await poll_until(consumer, 1) == ["only"]


async def test_partitions_added_later_are_picked_up_from_their_beginning(
    producer: KafkaProducerClient, create_topic: Any, kafka_bootstrap: str
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions  # noqa: PLC0415

    topic = await create_topic(partitions=1)
    await producer.publish(topic, "first", partition=0)
    consumer = consumer_for(kafka_bootstrap, topic)
    async with consumer:
        assert await poll_until(consumer, 1) == ["first"]
        assert await consumer.assign_new_partitions() == []
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({topic: NewPartitions(total_count=2)})
        finally:
            await admin.close()

        # The broker's metadata learns of the new partition a moment after the controller: the
        # producer refuses it (after one refresh) until then.
        async def published() -> bool:
            try:
                await producer.publish(topic, "on the new partition", partition=1)
            except KafkaUnknownPartitionError:
                return False
            return True

        await eventually(published, timeout_s=30)
        await producer.publish(topic, "on the old one", partition=0)
        assert await consumer.assign_new_partitions() == [(topic, 1)]
        values = await poll_until(consumer, 2)
        # The old partition continues where it was; "first" is not read twice.
        assert sorted(values) == ["on the new partition", "on the old one"]  # type: ignore[type-var]


async def test_a_consumer_in_a_group_leaves_partitions_to_kafka(
    topic: str, kafka_bootstrap: str
) -> None:
    consumer = consumer_for(kafka_bootstrap, topic, group_id=f"g-{uuid.uuid4().hex}")
    async with consumer:
        assert await consumer.assign_new_partitions() == []


async def test_a_consumer_started_without_partitions_reads_those_it_is_given(
    producer: KafkaProducerClient, create_topic: Any, kafka_bootstrap: str
) -> None:
    topic = await create_topic(partitions=3)
    base = int(time.time() * 1000) - 60_000  # recent: inside any retention
    for i in range(9):
        await producer.publish(topic, i, partition=i % 3, timestamp_ms=base + 1_000 * (i + 1))
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic], bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        ),
        assign_on_start=False,
    )
    async with consumer:
        assert await consumer.partitions_of(topic) == [0, 1, 2]
        # Partition 1 holds 1 (at 2 s), 4 (5 s), 7 (8 s): offsets 0, 1, 2.
        place = (topic, 1)
        assert await consumer.offsets_for_time([place], base + 4_000) == {place: 1}
        assert await consumer.offsets_for_time([place], base + 9_000) == {place: 3}  # the end
        consumer.assign([place])
        consumer.seek(place, 1)
        assert [m.value for m in await poll_until_values(consumer, 2)] == [4, 7]
        assert await consumer.position(place) == 3


async def poll_until_values(consumer: KafkaConsumerClient, count: int) -> list[Any]:
    messages: list[Any] = []
    for _ in range(40):
        messages += await consumer.poll(timeout_ms=500)
        if len(messages) >= count:
            break
    return messages
