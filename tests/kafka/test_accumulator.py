"""What KafkaProducerClient changes in aiokafka's accumulator, against the real broker."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from app.kafka import KafkaProducerClient, KafkaProducerConfig

CreateTopic = Callable[..., Awaitable[str]]


def _accumulator(client: KafkaProducerClient) -> Any:
    return client._producer._message_accumulator  # type: ignore[union-attr]


def _lingering(client: KafkaProducerClient) -> list[float]:
    """The remaining linger of every batch waiting in the producer, in seconds."""
    return [
        batch.remaining_linger() or 0.0
        for queued in _accumulator(client)._batches.values()
        for batch in queued
    ]


async def test_a_record_that_finds_the_producer_idle_is_sent_without_lingering(
    kafka_bootstrap: str, create_topic: CreateTopic
) -> None:
    topic = await create_topic(partitions=1)
    config = KafkaProducerConfig(
        bootstrap_servers=kafka_bootstrap, linger_ms=120_000, linger_when_idle=False
    )
    async with KafkaProducerClient(config=config) as client:
        # Lingering, it would wait two minutes: far past the wait below.
        for n in range(3):
            result = await asyncio.wait_for(client.publish(topic, {"n": n}), 30)
            assert result is not None
            assert result.offset == n


async def test_records_that_arrive_while_a_request_is_out_linger_as_configured(
    kafka_bootstrap: str, create_topic: CreateTopic
) -> None:
    topic = await create_topic(partitions=2)
    config = KafkaProducerConfig(
        bootstrap_servers=kafka_bootstrap, linger_ms=2_000, linger_when_idle=False
    )
    async with KafkaProducerClient(config=config) as client:
        await client.publish(topic, {"warm": True}, partition=0)  # metadata known, idle again
        # One call's records over both partitions, before the sender runs: all go at once.
        first = [await client.send(topic, {"n": p}, partition=p) for p in (0, 1)]
        assert _lingering(client) == [0.0, 0.0]
        accumulator = _accumulator(client)
        for _ in range(100_000):  # the sender's next step drains them; aiokafka signals nothing
            if accumulator._pending_batches:
                break
            await asyncio.sleep(0)
        assert accumulator._pending_batches, "the sender never took the batches"
        # Their request is out (the broker cannot have answered without the loop running):
        # a record now lingers for company.
        late = await client.send(topic, {"n": 2}, partition=0)
        [remaining] = _lingering(client)
        assert remaining > 1.0
        await asyncio.wait_for(asyncio.gather(*first), 30)
        assert (await asyncio.wait_for(late, 30)).offset == 2


async def test_by_default_the_library_lingers_as_kafkas_producers_do(
    kafka_bootstrap: str, topic: str
) -> None:
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, linger_ms=1_500)
    assert config.linger_when_idle
    async with KafkaProducerClient(config=config) as client:
        delivery = await client.send(topic, {"n": 0})
        [remaining] = _lingering(client)
        assert remaining > 1.0
        assert (await asyncio.wait_for(delivery, 30)).offset == 0
