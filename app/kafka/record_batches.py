"""Many records queued at once, one prepared aiokafka batch per partition
(`KafkaProducerClient.send_batch`).

aiokafka's `send()` costs about twice the CPU per record of filling a batch (`create_batch()`)
and handing it over whole (`send_batch()`): one accumulator entry and one future per batch
instead of per record. Each record still gets a future of its own, settled from the batch's:
its offset is the batch's base offset plus its index in the batch. Records of one partition
keep their order; a batch that is full (the producer's `max_batch_size`) is followed by the
next. The producer's checks per record stay: its partitioner, its record size limit.
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aiokafka import AIOKafkaProducer

from app.kafka.delivery import outcome_of
from app.kafka.errors import KafkaClientError, translate
from app.kafka.models import KafkaProduceResult

# A record as the producer takes it: key and value bytes, headers as (name, bytes) pairs.
RawRecord = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]
# What became of each record: its future (queued), the error that refused it (nothing was
# sent), or None (not queued within the time given: nothing was sent).
Queuing: TypeAlias = "asyncio.Future[KafkaProduceResult] | KafkaClientError | None"
Settled = Callable[[int, KafkaClientError | None], None]


@dataclass
class _Batch:
    """One prepared batch of a partition: aiokafka's builder and, per record, its index in
    the caller's list, its future, and its offset in the batch and timestamp."""

    partition: int
    builder: Any
    members: list[tuple[int, "asyncio.Future[KafkaProduceResult]", int, int]] = field(
        default_factory=list
    )


async def queue_batches(
    producer: AIOKafkaProducer,
    topic: str,
    records: Sequence[RawRecord],
    outcomes: list[Queuing],
    *,
    timeout_s: float,
    settled: Settled,
) -> None:
    """Queue `records` to `topic` in prepared batches, writing each record's `Queuing` into
    `outcomes` (one per record, None to start with) as its batch is queued, so a caller
    cancelled meanwhile still knows which were. `settled(n, error)` learns each batch's fate
    (n records acknowledged, or failed with `error`). Waits for the topic's metadata and for
    room at each partition (aiokafka takes a prepared batch once the one before it is on its
    way), all within `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            await producer.partitions_for(topic)  # the metadata the partitioner needs
    except TimeoutError:
        return
    except Exception as exc:
        outcomes[:] = [translate(exc)] * len(records)
        return
    batches = _prepare(producer, topic, records, outcomes)
    # Handed over open: the producer's linger still applies, and records sent one by one may
    # join the batch after ours.
    for batch in batches:
        try:
            async with asyncio.timeout_at(deadline):
                delivery = await producer.send_batch(
                    batch.builder, topic, partition=batch.partition
                )
        except TimeoutError:
            return  # this one and those after it: not queued in time
        except Exception as exc:
            error = translate(exc)
            for index, *_ in batch.members:
                outcomes[index] = error
            continue
        for index, future, *_ in batch.members:
            outcomes[index] = future
        delivery.add_done_callback(lambda done, batch=batch: _settle(topic, batch, done, settled))


def _prepare(
    producer: AIOKafkaProducer, topic: str, records: Sequence[RawRecord], outcomes: list[Queuing]
) -> list[_Batch]:
    """The records in batches per partition, in order; a record the producer refuses gets its
    error in `outcomes`."""
    loop = asyncio.get_running_loop()
    batches: list[_Batch] = []
    open_batches: dict[int, _Batch] = {}
    # A key's partition, once per key: the default partitioner hashes the key in Python.
    partitions: dict[bytes, int] = {}
    for index, (key, value, headers) in enumerate(records):
        try:
            # aiokafka's own checks of send(): the record's size, then its partition.
            key_bytes, value_bytes = producer._serialize(key, value, headers)
            partition = partitions.get(key_bytes) if key_bytes is not None else None
            if partition is None:
                partition = producer._partition(topic, None, key, value, key_bytes, value_bytes)
                if key_bytes is not None:
                    partitions[key_bytes] = partition
        except Exception as exc:
            outcomes[index] = translate(exc)
            continue
        batch = open_batches.get(partition)
        metadata = None
        if batch is not None:
            metadata = batch.builder.append(key=key, value=value, timestamp=None, headers=headers)
        if batch is None or metadata is None:  # no batch of this partition yet, or it is full
            batch = open_batches[partition] = _Batch(partition, producer.create_batch())
            batches.append(batch)
            # A new batch takes its first record whatever its size (the size was checked).
            metadata = batch.builder.append(key=key, value=value, timestamp=None, headers=headers)
        batch.members.append((index, loop.create_future(), metadata.offset, metadata.timestamp))
    return batches


def _settle(topic: str, batch: _Batch, done: "asyncio.Future[Any]", settled: Settled) -> None:
    metadata, error = outcome_of(done)
    if error is not None or metadata is None:
        error = error or KafkaClientError("delivery settled without a result")
        for _, future, *_ in batch.members:
            if not future.done():
                future.set_exception(error)
        settled(len(batch.members), error)
        return
    base, stamped = metadata.offset, metadata.timestamp
    for _, future, relative, timestamp in batch.members:
        if not future.done():
            # The broker's time with LogAppendTime; -1: the record's own (CreateTime).
            at = stamped if stamped != -1 else timestamp
            future.set_result(
                KafkaProduceResult.model_construct(
                    topic=topic, partition=batch.partition, offset=base + relative, timestamp_ms=at
                )
            )
    settled(len(batch.members), None)
