"""What `KafkaProducerClient` changes in aiokafka's record accumulator, and why.

aiokafka keeps a producer's unsent records in a `MessageAccumulator`: per partition a queue of
batches, each sent when it is full or its linger has passed, and the batches on their way in
`_pending_batches` until the broker answers. It has no public form, so each adjustment here
checks that the attribute it needs exists and raises `KafkaConfigError` otherwise (another
aiokafka version), rather than silently doing nothing.

- `keep_batches`: an idempotent producer's batches never expire (a partition without a leader
  must not lose records nor break the producer's sequence numbers).
- `send_when_idle`: a batch started while the producer has nothing on its way and nothing
  lingering is sent at once; linger gathers only what arrives while a request is out.
- `retrieve_batch_failures`: a stopped producer's failed batches are marked seen.
"""

import inspect
import math
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import MessageBatch

from app.kafka.errors import KafkaConfigError


def _accumulator(producer: AIOKafkaProducer, *needs: str) -> Any:
    accumulator = getattr(producer, "_message_accumulator", None)  # aiokafka has no public form
    if accumulator is None or not all(hasattr(accumulator, name) for name in needs):
        raise KafkaConfigError(
            f"this aiokafka version's record accumulator has no {', '.join(needs)}"
        )
    return accumulator


def keep_batches(producer: AIOKafkaProducer) -> None:
    """Make an idempotent `producer` keep every batch until the cluster takes it, as its
    sender already does for the batches it retries.

    aiokafka's accumulator fails a batch whose partition has had no leader (its only in-sync
    replica's node lost) for `request_timeout_ms`, even when the batch was sent once before
    and took its sequence numbers then. The broker refuses every later batch of the producer
    to that partition as out of order (`OutOfOrderSequenceNumber`), so the partition stays
    unwritable until the producer restarts; and each record so failed is lost. Kept, the
    batches wait for a leader, bounded by what the caller lets in flight."""
    _accumulator(producer, "_batch_ttl")._batch_ttl = math.inf


def send_when_idle(producer: AIOKafkaProducer) -> None:
    """Make `producer` send a batch at once when it starts on an idle producer: no batch on
    its way to a broker, none lingering. Linger then gathers only the records that arrive
    while a request is out, as Nagle's algorithm does for a socket's bytes.

    Linger exists to gather concurrent records into fewer requests. A record alone has nobody
    to wait for, yet with aiokafka's linger it waited the whole `linger_ms` (5 ms by default:
    most of an audit event's round trip at one connection). Under load a request is almost
    always out, so batches linger and gather as before. Every batch started before the sender
    next runs (one call's records over several partitions) goes with the first."""
    accumulator = _accumulator(producer, "_append_batch", "_batches", "_pending_batches")
    if "linger_time" not in inspect.signature(MessageBatch).parameters:
        raise KafkaConfigError("this aiokafka version's batches have no linger time to set")
    append: Callable[[Any, Any], Any] = accumulator._append_batch

    def append_batch(builder: Any, tp: Any) -> Any:
        batch = append(builder, tp)
        if _idle(accumulator, batch):
            batch._linger_time = 0
        return batch

    accumulator._append_batch = append_batch


def _idle(accumulator: Any, started: Any) -> bool:
    if accumulator._pending_batches:
        return False
    for queued in accumulator._batches.values():
        for batch in queued:
            # A batch sent at once but not yet drained (the same call's, another partition)
            # leaves the producer idle; one lingering does not.
            if batch is not started and batch._linger_time:
                return False
    return True


def retrieve_batch_failures(producer: AIOKafkaProducer) -> None:
    """Mark the failure of batches a dead sender failed as seen. aiokafka sets it on each
    batch's drain waiter too, which nobody awaits once the producer stopped: asyncio would
    log "Future exception was never retrieved" for an error already reported (a fenced
    transactional producer's, for one)."""
    accumulator = getattr(producer, "_message_accumulator", None)
    if accumulator is None:
        return
    batches = [*accumulator._pending_batches]
    for queued in accumulator._batches.values():
        batches += queued
    for batch in batches:
        waiter = getattr(batch, "_drain_waiter", None)
        if waiter is not None and waiter.done() and not waiter.cancelled():
            waiter.exception()
