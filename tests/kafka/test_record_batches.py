"""Records queued at once in prepared batches (`KafkaProducerClient.send_batch`,
app/kafka/record_batches.py), against the real broker."""

import asyncio
from collections.abc import Awaitable, Callable

from app.kafka import KafkaClientError, KafkaProducerClient, KafkaProducerConfig, KafkaProduceResult
from app.kafka.producer import partition_of_key
from app.kafka.record_batches import Queuing
from tests.helpers.kafka import read_all

CreateTopic = Callable[..., Awaitable[str]]


async def test_each_record_gets_its_own_partition_and_offset_and_the_order_per_key_holds(
    create_topic: CreateTopic, kafka_bootstrap: str
) -> None:
    topic = await create_topic(partitions=3)
    # Small batches: a partition's records fill several, each queued after the one before.
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, max_batch_size=2048)
    records = [(f"user-{i % 5}", {"n": i, "pad": "x" * 300}, {"h": str(i)}) for i in range(60)]
    outcomes: list[Queuing] = [None] * len(records)
    async with KafkaProducerClient(config=config) as producer:
        await producer.send_batch(topic, records, outcomes, timeout_s=10.0)
        futures = [outcome for outcome in outcomes if isinstance(outcome, asyncio.Future)]
        assert len(futures) == len(records)
        results: list[KafkaProduceResult] = await asyncio.gather(*futures)
        assert (producer.stats.sent, producer.stats.delivered, producer.stats.failed) == (60, 60, 0)
    stored = {(m.partition, m.offset): m for m in await read_all(kafka_bootstrap, topic, 60)}
    for (key, value, headers), result in zip(records, results, strict=True):
        assert result.topic == topic
        assert result.partition == partition_of_key(key, [0, 1, 2])
        message = stored[(result.partition, result.offset)]  # the offset is the record's own
        assert (message.key, message.value) == (key, value)
        assert message.headers["h"] == headers["h"].encode()
        assert message.header("content-type") == "application/json"
    for user in {key for key, _, _ in records}:
        sent = [value["n"] for key, value, _ in records if key == user]
        offsets = [r.offset for (key, _, _), r in zip(records, results, strict=True) if key == user]
        assert sorted(offsets) == offsets, user  # in the order given
        assert len(sent) == len(set(offsets))


async def test_a_record_too_large_is_refused_alone(topic: str, kafka_bootstrap: str) -> None:
    # Beyond the producer's request size (aiokafka's 1 MiB): refused as send() refuses it.
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap)
    records = [("k", b"small", None), ("k", b"x" * 1_100_000, None), ("k", b"small too", None)]
    outcomes: list[Queuing] = [None] * len(records)
    async with KafkaProducerClient(config=config) as producer:
        await producer.send_batch(topic, records, outcomes, timeout_s=10.0)
        first, refused, last = outcomes
        assert isinstance(refused, KafkaClientError)
        assert isinstance(first, asyncio.Future)
        assert isinstance(last, asyncio.Future)
        assert (await last).offset == (await first).offset + 1
        assert (producer.stats.sent, producer.stats.failed) == (3, 1)
    assert [m.value for m in await read_all(kafka_bootstrap, topic, 2)] == ["small", "small too"]


async def test_records_not_queued_in_time_are_none_and_not_counted(
    topic: str, kafka_bootstrap: str
) -> None:
    # No time at all: nothing is queued, whatever the cluster.
    outcomes: list[Queuing] = [None, None]
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap)
    async with KafkaProducerClient(config=config) as producer:
        await producer.send_batch(
            topic, [("k", b"a", None), ("k", b"b", None)], outcomes, timeout_s=0.0
        )
        assert outcomes == [None, None]
        assert producer.stats.sent == 0
