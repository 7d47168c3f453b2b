"""KafkaStreamProcessor against the real broker."""

import asyncio
import uuid

import pytest

from app.kafka import (
    KafkaConfigError,
    KafkaConsumerClient,
    KafkaConsumerConfig,
    KafkaHandlerError,
    KafkaMessage,
    KafkaProducerClient,
    KafkaPublishRequest,
    KafkaStreamConfig,
    KafkaStreamProcessor,
)
from tests.helpers.kafka import read_all


def group_consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumerClient:
    return KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic],
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
        )
    )


async def seed(producer: KafkaProducerClient, topic: str, count: int) -> None:
    for i in range(count):
        await producer.publish(topic, {"n": i}, key="k")


async def process_until(
    processor: KafkaStreamProcessor, handler: object, count: int, output_topic: str | None = None
) -> int:
    total = 0
    for _ in range(60):
        total += await processor.process_once(handler, output_topic=output_topic)  # type: ignore[arg-type]
        if total >= count:
            break
    return total


async def test_none_consumes_and_commits(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    group = uuid.uuid4().hex
    await seed(producer, topic, 5)
    seen: list[int] = []
    async with group_consumer(kafka_bootstrap, topic, group) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer)
        assert (
            await process_until(processor, lambda b: seen.extend(m.value["n"] for m in b), 5) == 5
        )
    assert seen == [0, 1, 2, 3, 4]
    # Committed: the group has nothing left to read.
    async with group_consumer(kafka_bootstrap, topic, group) as again:
        assert await again.poll(timeout_ms=2000) == []


async def test_publish_requests_are_routed_as_they_say(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    out_a, out_b = f"{topic}-a", f"{topic}-b"
    await seed(producer, topic, 4)

    def route(batch: list[KafkaMessage]) -> list[KafkaPublishRequest]:
        return [
            KafkaPublishRequest(
                topic=out_a if m.value["n"] % 2 == 0 else out_b,
                key=f"key-{m.value['n']}",
                value={"doubled": m.value["n"] * 2},
                headers={"source-offset": str(m.offset)},
            )
            for m in batch
        ]

    async with group_consumer(kafka_bootstrap, topic, uuid.uuid4().hex) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer)
        await process_until(processor, route, 4)
    evens = await read_all(kafka_bootstrap, out_a, 2)
    odds = await read_all(kafka_bootstrap, out_b, 2)
    assert sorted(m.value["doubled"] for m in evens) == [0, 4]
    assert sorted(m.value["doubled"] for m in odds) == [2, 6]
    assert {m.key for m in evens} == {"key-0", "key-2"}
    assert all(m.header("source-offset") is not None for m in evens + odds)


async def test_plain_values_go_to_the_output_topic_from_an_async_handler(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    output = f"{topic}-out"
    await seed(producer, topic, 3)

    async def handler(batch: list[KafkaMessage]) -> list[str]:
        await asyncio.sleep(0)
        return [f"seen {m.value['n']}" for m in batch]

    async with group_consumer(kafka_bootstrap, topic, uuid.uuid4().hex) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer)
        await process_until(processor, handler, 3, output_topic=output)
    assert sorted(m.value for m in await read_all(kafka_bootstrap, output, 3)) == [
        "seen 0",
        "seen 1",
        "seen 2",
    ]


async def test_a_failing_batch_without_dead_letter_propagates_and_commits_nothing(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    group = uuid.uuid4().hex
    await seed(producer, topic, 3)

    def explode(batch: list[KafkaMessage]) -> None:
        raise ValueError("model endpoint down")

    async with group_consumer(kafka_bootstrap, topic, group) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer)
        with pytest.raises(KafkaHandlerError, match="model endpoint down"):
            await process_until(processor, explode, 3)

    # Nothing was committed: the group reads the same records again.
    async with group_consumer(kafka_bootstrap, topic, group) as again:
        processor = KafkaStreamProcessor(consumer=again, producer=producer)
        seen: list[int] = []
        await process_until(processor, lambda b: seen.extend(m.value["n"] for m in b), 3)
    assert seen == [0, 1, 2]


async def test_a_failing_batch_goes_to_the_dead_letter_topic_and_processing_continues(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    dead = f"{topic}-dlq"
    group = uuid.uuid4().hex
    await seed(producer, topic, 2)
    processed: list[int] = []

    def picky(batch: list[KafkaMessage]) -> None:
        if any(m.value["n"] < 2 for m in batch):
            raise ValueError("cannot handle early records")
        processed.extend(m.value["n"] for m in batch)

    async with group_consumer(kafka_bootstrap, topic, group) as consumer:
        processor = KafkaStreamProcessor(
            consumer=consumer,
            producer=producer,
            config=KafkaStreamConfig(dead_letter_topic=dead),
        )
        await process_until(processor, picky, 2)
        await producer.publish(topic, {"n": 2}, key="k")
        await process_until(processor, picky, 1)

    assert processed == [2]
    letters = await read_all(kafka_bootstrap, dead, 2)
    assert [m.value for m in letters] == [{"n": 0}, {"n": 1}]
    assert all("cannot handle early records" in (m.header("rg-dlq-error") or "") for m in letters)
    assert letters[0].header("rg-dlq-source") == f"{topic}/{letters[0].partition}/0"
    assert letters[0].key == "k"


async def test_stop_ends_run_after_the_current_batch(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    await seed(producer, topic, 2)
    async with group_consumer(kafka_bootstrap, topic, uuid.uuid4().hex) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer)
        seen: list[int] = []
        running = asyncio.create_task(processor.run(lambda b: seen.extend(m.value["n"] for m in b)))
        for _ in range(100):
            if len(seen) >= 2:
                break
            await asyncio.sleep(0.1)
        processor.stop()
        total = await asyncio.wait_for(running, 10)
    assert total == 2
    assert seen == [0, 1]


async def test_run_honours_iterations(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    async with group_consumer(kafka_bootstrap, topic, uuid.uuid4().hex) as consumer:
        processor = KafkaStreamProcessor(
            consumer=consumer, producer=producer, config=KafkaStreamConfig(max_wait_ms=50)
        )
        assert await processor.run(lambda b: None, iterations=3) == 0


def test_unit_commit_on_success_needs_a_group() -> None:
    consumer = KafkaConsumerClient(config=KafkaConsumerConfig(topics=["t"]))
    with pytest.raises(KafkaConfigError, match="group_id"):
        KafkaStreamProcessor(consumer=consumer)
    KafkaStreamProcessor(consumer=consumer, config=KafkaStreamConfig(commit_on_success=False))


async def test_without_commits_outputs_may_be_fire_and_forget(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    output = f"{topic}-out"
    await seed(producer, topic, 2)
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic], bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
    )
    async with consumer:
        processor = KafkaStreamProcessor(
            consumer=consumer,
            producer=producer,
            config=KafkaStreamConfig(commit_on_success=False, wait_for_publish=False),
        )
        await process_until(processor, lambda b: [m.value["n"] for m in b], 2, output_topic=output)
    await producer.flush(timeout_s=10)
    assert sorted(m.value for m in await read_all(kafka_bootstrap, output, 2)) == [0, 1]
