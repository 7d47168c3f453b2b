"""`KafkaProducerClient`: typed, async publishing on aiokafka.

A record goes out in two halves, and `publish()` is the two in a row:
1. `queue()` hands the record to the producer within a deadline and returns its `Delivery`
   (past the deadline, `KafkaTimeoutError`: nothing was sent);
2. `Delivery.wait()` waits for the acknowledgement, by default for the rest of that deadline
   (past it, `KafkaTimeoutError`: the record may still be delivered).
A service that decides something between or after the halves (spool, count, answer early) uses
them directly. `Delivery`, `outcome_of()` and the client's `stats` are in `app.kafka.delivery`.

With `config.transactional_id` the producer is transactional (the exactly-once stream
processor's): `start()` registers the id with the cluster, which fences any older producer of
the same id, and records are sent between `begin_transaction()` and `commit_transaction()` /
`abort_transaction()`. Once fenced, every call raises `KafkaFencedError` naming the id. The
checks of those calls are in `app.kafka.transactions`.
"""

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, Unpack

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import RecordMetadata

from app.kafka.accumulator import keep_batches, retrieve_batch_failures, send_when_idle
from app.kafka.config import KafkaProducerConfig
from app.kafka.delivery import (
    Delivery,
    DeliveryCallback,
    DeliveryFailure,
    ProducerStats,
    outcome_of,
)
from app.kafka.errors import (
    KafkaClientError,
    KafkaNotStartedError,
    KafkaRecordTooLargeError,
    KafkaSerializationError,
    KafkaTimeoutError,
    KafkaUnknownPartitionError,
    translate,
)
from app.kafka.lifecycle import AsyncLifecycle
from app.kafka.models import KafkaProduceResult
from app.kafka.record_batches import Queuing, RawRecord, queue_batches
from app.kafka.serde import (
    CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    HeaderInput,
    Serializer,
    canonical_json,
    encode_headers,
    is_json_encoded,
    serialize,
)
from app.kafka.transactions import ProducerTransactions

logger = logging.getLogger(__name__)


class ProduceOptions(TypedDict, total=False):
    """Where a record goes and what it carries besides its value: the keywords `send()`,
    `queue()`, `publish()` and `publish_json()` share (an absent one is None; see `send()`)."""

    key: Any
    headers: HeaderInput | None
    partition: int | None
    timestamp_ms: int | None


class KafkaProducerClient(AsyncLifecycle):
    """Typed async facade over `aiokafka.AIOKafkaProducer`.

    Use `async with KafkaProducerClient(config=...) as producer:` or `start()`/`close()`.
    `producer` may be a pre-built aiokafka producer (dependency injection). The serializers
    default to `app.kafka.serde.serialize`; a JSON-encoded value gets `content-type:
    application/json` unless the caller set a content-type header.

    Every record's fate is counted in `stats`; a failure is logged, and with `wait=False` it is
    also handed to `on_delivery` and kept in `stats.recent_failures`, never dropped silently.
    """

    def __init__(
        self,
        *,
        config: KafkaProducerConfig | None = None,
        producer: AIOKafkaProducer | None = None,
        key_serializer: Serializer | None = None,
        value_serializer: Serializer | None = None,
    ) -> None:
        self.config = config or KafkaProducerConfig()
        self._producer = producer
        self._key_serializer = key_serializer or serialize
        self._value_serializer = value_serializer
        self._started = False
        self._closed = False
        self.stats = ProducerStats()
        self._max_request_size: int = self.config.to_aiokafka().get(
            "max_request_size", _AIOKAFKA_MAX_REQUEST_SIZE
        )
        self._transactions = ProducerTransactions(self.config)

    @property
    def started(self) -> bool:
        """True between a successful `start()` and `close()`."""
        return self._started

    async def start(self) -> None:
        """Connect to the cluster. Raises `KafkaConnectionError` when no broker answers;
        calling `start()` again later retries."""
        if self._closed:
            raise KafkaNotStartedError("this producer was closed; create a new one")
        if self._started:
            return
        if self._producer is None:
            self._producer = AIOKafkaProducer(**self.config.to_aiokafka())
            if self.config.enable_idempotence and self.config.transactional_id is None:
                keep_batches(self._producer)
            if not self.config.linger_when_idle:
                send_when_idle(self._producer)
        try:
            await self._producer.start()
        except Exception as exc:
            raise translate(exc) from exc
        self._started = True

    def _require_started(self) -> AIOKafkaProducer:
        if not self._started or self._producer is None:
            raise KafkaNotStartedError("the producer is not started: call start() first")
        return self._producer

    async def send(
        self, topic: str, value: Any, **options: Unpack[ProduceOptions]
    ) -> "asyncio.Future[KafkaProduceResult]":
        """Queue one record; return a future of its acknowledgement (the delivery handle).

        `key=None` sends no key (partitions are then chosen per batch); `value=None` is a
        tombstone. Waits only for the topic's metadata and when the producer's buffer for the
        partition is full (while the broker is away, for instance): bound it with
        `asyncio.wait_for`; a cancelled send has queued nothing.
        """
        _refuse_unknown(options)
        producer = self._require_started()
        key, headers = options.get("key"), options.get("headers")
        partition, timestamp_ms = options.get("partition"), options.get("timestamp_ms")
        if key is None and value is None:
            raise KafkaSerializationError(
                "a record needs a key or a value (a tombstone, value None, needs the key it "
                "deletes)"
            )
        raw_key, payload, header_list = self._serialized(key, value, headers)
        if partition is not None:
            await self._check_partition(producer, topic, partition)
        self.stats.sent += 1
        try:
            delivery = await producer.send(
                topic,
                payload,
                key=raw_key,
                partition=partition,
                timestamp_ms=timestamp_ms,
                headers=header_list,
            )
        except asyncio.CancelledError:
            # Given up while waiting for buffer space (e.g. a timeout): nothing was queued.
            self._count_failure(topic, KafkaTimeoutError("cancelled before it was queued"))
            raise
        except Exception as exc:
            error = self._transactions.named(translate(exc))
            self._count_failure(topic, error)
            raise error from exc
        receipt: asyncio.Future[KafkaProduceResult] = asyncio.get_running_loop().create_future()
        delivery.add_done_callback(lambda done: self._settle(topic, done, receipt))
        return receipt

    def _serialized(
        self, key: Any, value: Any, headers: HeaderInput | None
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]:
        # The key, value and headers as send() hands them to aiokafka.
        header_list = encode_headers(headers)
        if self._value_serializer is not None:
            payload = self._value_serializer(value)
        else:
            payload = serialize(value)
            if is_json_encoded(value) and not any(n == CONTENT_TYPE for n, _ in header_list):
                header_list.append((CONTENT_TYPE, JSON_CONTENT_TYPE.encode()))
        raw_key = self._key_serializer(key) if key is not None else None
        return raw_key, payload, header_list

    def check_size(
        self, value: Any, *, key: Any = None, headers: HeaderInput | None = None
    ) -> None:
        """Raise `KafkaRecordTooLargeError` when `send()` would refuse this record for its
        size (the producer's `max_request_size`), sending nothing: for a caller that keeps a
        record elsewhere first (a disk spool) and must not keep one no send can take."""
        raw_key, payload, header_list = self._serialized(key, value, headers)
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(raw_key, payload, header_list)
        if size > self._max_request_size:
            raise KafkaRecordTooLargeError(
                f"the record is {size} bytes serialized, more than the producer's "
                f"max_request_size ({self._max_request_size})"
            )

    async def send_batch(
        self,
        topic: str,
        records: Sequence[tuple[Any, Any, HeaderInput | None]],
        outcomes: list[Queuing],
        *,
        timeout_s: float,
    ) -> None:
        """Queue many `(key, value, headers)` records at once, in prepared batches per
        partition (`app.kafka.record_batches`: about half aiokafka's CPU per record of
        `send()`); the records of one partition keep their order. Each record's outcome is
        written into `outcomes` (one per record, None to start with) once it is decided: the
        future of its acknowledgement (as `send()`'s), the error that refused it, or None when
        it was not queued within `timeout_s` (or the call was cancelled first): nothing of it
        was sent. Records are serialized as by `send()`; each goes to its key's partition."""
        producer = self._require_started()
        raw: list[RawRecord] = []
        for key, value, headers in records:
            header_list = encode_headers(headers)
            if self._value_serializer is not None:
                payload = self._value_serializer(value)
            else:
                payload = serialize(value)
                if is_json_encoded(value) and not any(n == CONTENT_TYPE for n, _ in header_list):
                    header_list.append((CONTENT_TYPE, JSON_CONTENT_TYPE.encode()))
            raw.append((self._key_serializer(key), payload, header_list))

        def settled(count: int, error: KafkaClientError | None) -> None:
            if error is None:
                self.stats.delivered += count
                return
            error = self._transactions.named(error)
            for _ in range(count):
                self._count_failure(topic, error)

        # In flight from now on (what bounds the producer's backlog counts them), until
        # known not to be.
        self.stats.sent += len(raw)
        try:
            await queue_batches(
                producer, topic, raw, outcomes, timeout_s=timeout_s, settled=settled
            )
        finally:
            for outcome in outcomes:
                if outcome is None:  # not queued: not sent after all
                    self.stats.sent -= 1
                elif not isinstance(outcome, asyncio.Future):  # refused: sent and failed,
                    self._count_failure(topic, outcome)  # as by send()

    async def _check_partition(
        self, producer: AIOKafkaProducer, topic: str, partition: int
    ) -> None:
        # aiokafka fails an unknown partition with a bare assertion; partitions may also have
        # been added since the metadata was fetched, so look once more before refusing.
        try:
            known = await producer.partitions_for(topic)
            if partition not in known:
                await producer.client.force_metadata_update()
                known = await producer.partitions_for(topic)
        except Exception as exc:
            raise translate(exc) from exc
        if partition not in known:
            raise KafkaUnknownPartitionError(
                f"topic {topic!r} has no partition {partition} (it has {len(known)})"
            )

    def _settle(
        self,
        topic: str,
        delivery: "asyncio.Future[RecordMetadata]",
        receipt: "asyncio.Future[KafkaProduceResult]",
    ) -> None:
        metadata, error = outcome_of(delivery)
        if error is not None or metadata is None:
            error = self._transactions.named(
                error or KafkaClientError("delivery settled without a result")
            )
            self._count_failure(topic, error)
            if not receipt.done():
                receipt.set_exception(error)
            return
        self.stats.delivered += 1
        if not receipt.done():
            receipt.set_result(
                # Trusted values from the client: no validation per record.
                KafkaProduceResult.model_construct(
                    topic=metadata.topic,
                    partition=metadata.partition,
                    offset=metadata.offset,
                    timestamp_ms=metadata.timestamp if metadata.timestamp != -1 else None,
                )
            )

    def _count_failure(self, topic: str, error: KafkaClientError) -> None:
        self.stats.failed += 1
        self.stats.recent_failures.append(DeliveryFailure(topic=topic, error=error))

    async def queue(
        self, topic: str, value: Any, *, timeout_s: float = 10.0, **options: Unpack[ProduceOptions]
    ) -> Delivery:
        """The first half of `publish()`: `send()` within `timeout_s`, and the record's
        `Delivery`, whose `wait()` then waits for what is left of `timeout_s`.

        Raises `KafkaTimeoutError` when the record could not be queued in time (the producer's
        buffer is full, the topic's metadata does not come): nothing was sent. Queued with no
        await in between when there is room, so the record is counted in `stats` before the
        caller's next await."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            # A timeout scope, not wait_for: send() runs in this task (no task in between).
            async with asyncio.timeout(timeout_s):
                future = await self.send(topic, value, **options)
        except TimeoutError:
            raise KafkaTimeoutError(
                f"the producer could not queue a record to {topic!r} within {timeout_s}s "
                "(its buffer is full: is Kafka reachable?); nothing was sent"
            ) from None
        return Delivery(topic, future, timeout_s=timeout_s, deadline=deadline)

    async def publish(
        self,
        topic: str,
        value: Any,
        *,
        wait: bool = True,
        timeout_s: float = 10.0,
        on_delivery: DeliveryCallback | None = None,
        **options: Unpack[ProduceOptions],
    ) -> KafkaProduceResult | None:
        """Publish one record: `queue()`, then `Delivery.wait()`.

        `timeout_s` bounds the whole call. With `wait=True`, return its `KafkaProduceResult`
        once the cluster acknowledged it, or raise (`KafkaTimeoutError` after `timeout_s`: when
        the record was queued by then it may still arrive later). With `wait=False`, return None
        once the record is queued; the outcome goes to `on_delivery(result, error)`, failures
        are also logged and kept in `stats`.
        """
        delivery = await self.queue(topic, value, timeout_s=timeout_s, **options)
        if not wait:
            delivery.log_failure()
            if on_delivery is not None:
                delivery.add_done_callback(on_delivery)
            return None
        try:
            return await delivery.wait()
        except KafkaTimeoutError:
            if not delivery.done():
                delivery.log_failure()  # nobody learns of it otherwise
            raise

    async def publish_json(
        self,
        topic: str,
        payload: Any,
        *,
        wait: bool = True,
        timeout_s: float = 10.0,
        on_delivery: DeliveryCallback | None = None,
        **options: Unpack[ProduceOptions],
    ) -> KafkaProduceResult | None:
        """`publish()` for a JSON payload: always JSON-encoded, a str included."""
        headers = options.get("headers") or {}
        options["headers"] = {CONTENT_TYPE: JSON_CONTENT_TYPE, **headers}  # theirs win
        return await self.publish(
            topic,
            canonical_json(payload),
            wait=wait,
            timeout_s=timeout_s,
            on_delivery=on_delivery,
            **options,
        )

    # Transactions (config.transactional_id set): `ProducerTransactions` checks each call
    # against aiokafka's state and raises the library's errors.

    @property
    def transactional_id(self) -> str | None:
        """The transactional id, or None for an ordinary (idempotent) producer."""
        return self.config.transactional_id

    @property
    def in_transaction(self) -> bool:
        """True between `begin_transaction()` and the end of its commit or abort (also when a
        send failed and only an abort is left)."""
        return self._transactions.open(self._producer)

    async def begin_transaction(self) -> None:
        """Open a transaction: what is sent until the commit becomes visible to
        read_committed readers at once, or never."""
        await self._transactions.begin(self._require_started())

    async def send_offsets_to_transaction(
        self, offsets: Mapping[tuple[str, int], int], group_id: str
    ) -> None:
        """Add consumed offsets (`(topic, partition) -> next offset`) of consumer group
        `group_id` to the open transaction: committed with its records, or not at all."""
        await self._transactions.send_offsets(self._require_started(), offsets, group_id)

    async def commit_transaction(self) -> None:
        """Flush the transaction's records and commit it (records and offsets at once)."""
        await self._transactions.commit(self._require_started())

    async def abort_transaction(self) -> None:
        """Abort the open transaction (none open: nothing to do). Raises `KafkaFencedError`
        when fenced: the cluster already aborted it for the instance that took over."""
        await self._transactions.abort(self._require_started())

    async def flush(self, *, timeout_s: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged or failed."""
        producer = self._require_started()
        try:
            await asyncio.wait_for(producer.flush(), timeout_s)
        except TimeoutError:
            raise KafkaTimeoutError(
                f"{self.stats.pending} record(s) still unacknowledged after {timeout_s}s"
            ) from None

    async def ping(self, *, timeout_s: float = 2.0, topic: str | None = None) -> bool:
        """True when a metadata request to the cluster succeeds within `timeout_s`. With a
        `topic`, only that topic's metadata is asked for (never auto-creating it), of each
        known broker in turn until one answers: cheap on a cluster of many topics."""
        if not self._started or self._producer is None:
            return False
        client = self._producer.client
        try:
            if topic is None:
                await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
            else:
                return await asyncio.wait_for(_any_broker_answers(client, topic), timeout_s)
        except Exception:  # every failure means "not reachable now"
            return False
        return True

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Flush (up to `timeout_s`), then release connections. Records still unacknowledged
        after that are reported as failed in the log."""
        if self._closed:
            return
        self._closed = True
        producer, self._producer = self._producer, None
        if producer is None:
            return
        if self._started:
            self._started = False
            try:
                await asyncio.wait_for(producer.flush(), timeout_s)
            except TimeoutError:
                logger.error(
                    "closing the producer with %d record(s) unacknowledged after %ss",
                    self.stats.pending,
                    timeout_s,
                )
                # aiokafka's stop() would wait for those forever (idempotent batches never
                # expire): end its sender first so stop() can finish.
                sender = getattr(producer, "_sender", None)
                task = getattr(sender, "sender_task", None)
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
        await producer.stop()
        retrieve_batch_failures(producer)


# aiokafka's own default, for a config that does not set it (through `extra`).
_AIOKAFKA_MAX_REQUEST_SIZE: int = (
    inspect.signature(AIOKafkaProducer).parameters["max_request_size"].default
)


def partition_of_key(key: Any, partitions: list[int]) -> int:
    """The partition a record with `key` goes to among `partitions` (sorted ids): the
    producer's own partitioner (aiokafka's default, murmur2 of the key's bytes as the Java
    client does) over the key as the client serializes it. Readers use it to find one key's
    records (GET /audit/records: a user's) in one partition."""
    raw = serialize(key)
    if raw is None:
        raise ValueError("a record without a key has no partition of its own")
    chosen: int = DefaultPartitioner()(raw, partitions, partitions)
    return chosen


def _refuse_unknown(options: ProduceOptions) -> None:
    # A typo'd keyword would otherwise pass through `**options` unnoticed where a signature
    # that spelled the keywords out refused it.
    unknown = sorted(options.keys() - ProduceOptions.__optional_keys__)
    if unknown:
        raise TypeError(f"got an unexpected keyword argument {unknown[0]!r}")


async def _any_broker_answers(client: Any, topic: str) -> bool:
    request = MetadataRequest([topic], allow_auto_topic_creation=False)
    for broker in client.cluster.brokers():
        try:
            await client.send(broker.nodeId, request)
        except Exception:  # noqa: S112 - the next broker may answer
            continue
        return True
    return False
