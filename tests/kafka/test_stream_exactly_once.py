"""KafkaStreamProcessor with processing_guarantee="exactly_once", against the real broker:
outputs and offsets committed together, aborted batches invisible to read_committed readers."""

import time
import uuid
from typing import Any

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
    KafkaUnknownPartitionError,
)
from app.kafka.transactions import transactional_id
from tests.helpers.kafka import read_all, records_in

EXACTLY_ONCE = KafkaStreamConfig(processing_guarantee="exactly_once", batch_size=10)


def group_consumer(bootstrap: str, topic: str, group: str | None) -> KafkaConsumerClient:
    return KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic],
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
    )


async def seed(producer: KafkaProducerClient, topic: str, count: int) -> None:
    for i in range(count):
        await producer.publish(topic, {"n": i}, key=f"k{i % 3}")


async def process_until(
    processor: KafkaStreamProcessor, handler: Any, count: int, output_topic: str | None = None
) -> int:
    total = 0
    for _ in range(100):
        total += await processor.process_once(handler, output_topic=output_topic)
        if total >= count:
            break
    return total


def doubled(batch: list[KafkaMessage]) -> list[dict[str, int]]:
    return [{"n": m.value["n"], "doubled": m.value["n"] * 2} for m in batch]


async def committed_values(bootstrap: str, topic: str, count: int) -> list[int]:
    messages = await read_all(bootstrap, topic, count, isolation_level="read_committed")
    return sorted(m.value["n"] for m in messages)


async def test_outputs_and_offsets_are_committed_together_per_partition(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    group, output = uuid.uuid4().hex, f"{topic}-out"
    await seed(producer, topic, 30)
    async with group_consumer(kafka_bootstrap, topic, group) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer, config=EXACTLY_ONCE)
        try:
            assert await process_until(processor, doubled, 30, output) == 30
            # One producer per input partition held, named after the group and the partition.
            assert processor.transactional_ids == sorted(
                transactional_id(group, (topic, p)) for p in range(3)
            )
        finally:
            await processor.close()
    assert await committed_values(kafka_bootstrap, output, 30) == list(range(30))
    # The offsets went in with the outputs: the group has nothing left to read.
    async with group_consumer(kafka_bootstrap, topic, group) as again:
        assert await again.poll(timeout_ms=2000) == []


async def test_a_failed_send_aborts_the_batch_and_rewinds_so_it_is_processed_once(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str, create_topic: Any
) -> None:
    source = await create_topic(partitions=1)
    group, output = uuid.uuid4().hex, await create_topic(partitions=1)
    await seed(producer, source, 5)
    calls = 0

    def fails_after_sending(batch: list[KafkaMessage]) -> list[KafkaPublishRequest]:
        nonlocal calls
        calls += 1
        requests = [KafkaPublishRequest(topic=output, value=v) for v in doubled(batch)]
        if calls == 1:  # sent after the good outputs: they are in the transaction already
            requests.append(KafkaPublishRequest(topic=output, value={"n": -1}, partition=99))
        return requests

    async with group_consumer(kafka_bootstrap, source, group) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer, config=EXACTLY_ONCE)
        try:
            with pytest.raises(KafkaUnknownPartitionError):
                await process_until(processor, fails_after_sending, 5)
            # Rewound to the last commit: the same processor reads the batch again.
            assert await process_until(processor, fails_after_sending, 5) == 5
        finally:
            await processor.close()
    # The aborted outputs were written (a read_uncommitted reader sees them) ...
    everything = await read_all(kafka_bootstrap, output, 10)
    assert sorted(m.value["n"] for m in everything) == sorted([*range(5), *range(5)])
    # ... but a read_committed reader sees each output exactly once.
    assert await committed_values(kafka_bootstrap, output, 5) == list(range(5))
    assert await records_in(kafka_bootstrap, output) > 10  # and the transaction markers


async def test_a_handler_failure_aborts_rewinds_and_stops_run_without_a_dead_letter_topic(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str, create_topic: Any
) -> None:
    source = await create_topic(partitions=1)
    group, output = uuid.uuid4().hex, f"{topic}-out"
    await seed(producer, source, 4)
    failing = True

    def flaky(batch: list[KafkaMessage]) -> list[dict[str, int]]:
        if failing:
            raise ValueError("model endpoint down")
        return doubled(batch)

    async with group_consumer(kafka_bootstrap, source, group) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer, config=EXACTLY_ONCE)
        try:
            with pytest.raises(KafkaHandlerError, match="model endpoint down"):
                await processor.run(flaky, output_topic=output)
            failing = False
            assert await process_until(processor, flaky, 4, output) == 4
        finally:
            await processor.close()
    assert await committed_values(kafka_bootstrap, output, 4) == list(range(4))


async def test_dead_letters_go_into_the_same_transaction_as_the_offsets(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    group, dead = uuid.uuid4().hex, f"{topic}-dlq"
    await seed(producer, topic, 6)

    def explode(batch: list[KafkaMessage]) -> None:
        raise ValueError("cannot handle these")

    config = EXACTLY_ONCE.model_copy(update={"dead_letter_topic": dead})
    async with group_consumer(kafka_bootstrap, topic, group) as consumer:
        processor = KafkaStreamProcessor(consumer=consumer, producer=producer, config=config)
        try:
            assert await process_until(processor, explode, 6) == 6
        finally:
            await processor.close()
    letters = await read_all(kafka_bootstrap, dead, 6, isolation_level="read_committed")
    assert sorted(m.value["n"] for m in letters) == list(range(6))
    assert all("cannot handle these" in (m.header("rg-dlq-error") or "") for m in letters)
    async with group_consumer(kafka_bootstrap, topic, group) as again:
        assert await again.poll(timeout_ms=2000) == []


@pytest.mark.parametrize(
    ("group", "with_producer", "message"),
    [
        (None, True, "group_id"),
        ("g", False, "needs a producer"),
    ],
)
def test_unit_exactly_once_needs_a_group_and_a_producer(
    group: str | None, with_producer: bool, message: str
) -> None:
    consumer = group_consumer("localhost:9092", "t", group)
    producer = KafkaProducerClient() if with_producer else None
    with pytest.raises(KafkaConfigError, match=message):
        KafkaStreamProcessor(consumer=consumer, producer=producer, config=EXACTLY_ONCE)


async def test_throughput_at_least_once_vs_exactly_once_is_printed(
    producer: KafkaProducerClient, kafka_bootstrap: str, create_topic: Any
) -> None:
    """Not an assertion on speed: the figure docs/streams.md quotes (same input, handler and
    batch size; the group's join is left out of the timing)."""
    count, source = 20_000, await create_topic(partitions=3)
    deliveries = [await producer.queue(source, {"n": i}, key=f"k{i % 50}") for i in range(count)]
    for delivery in deliveries:
        await delivery.wait()
    rates: dict[str, float] = {}
    for guarantee in ("at_least_once", "exactly_once"):
        output = await create_topic(partitions=3)
        config = KafkaStreamConfig(processing_guarantee=guarantee, batch_size=100)
        async with group_consumer(kafka_bootstrap, source, uuid.uuid4().hex) as consumer:
            processor = KafkaStreamProcessor(consumer=consumer, producer=producer, config=config)
            try:
                done = 0
                while done == 0:  # joined, partitions claimed, first batch processed
                    done = await processor.process_once(doubled, output_topic=output)
                first, started = done, time.perf_counter()
                while done < count:
                    done += await processor.process_once(doubled, output_topic=output)
                rates[guarantee] = (done - first) / (time.perf_counter() - started)
            finally:
                await processor.close()
        assert done == count
    print(
        f"\n{count} records, batch 100, 3 input partitions: at-least-once "
        f"{rates['at_least_once']:,.0f} records/s, exactly-once {rates['exactly_once']:,.0f} "
        f"records/s ({rates['exactly_once'] / rates['at_least_once']:.0%})"
    )
