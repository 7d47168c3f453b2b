"""`KafkaConsumerClient`: typed, async polling on aiokafka, with or without a consumer group.

In a group, partitions move between members when one joins, leaves or dies. aiokafka rebalances
eagerly: every member gives up all its partitions (the revoke callbacks run then, before the
group goes on), and the new assignment is handed out once all have. The client keeps the
latest assignment in `assigned` and calls `on_revoke` callbacks: a stream processor finishes
the batch in progress there, so its commit happens while the partitions are still its own.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord, TopicPartition

from app.kafka.config import KafkaConsumerConfig
from app.kafka.errors import (
    KafkaCommitError,
    KafkaNoGroupError,
    KafkaNotStartedError,
    translate,
)
from app.kafka.lifecycle import AsyncLifecycle, cancelling
from app.kafka.models import KafkaMessage
from app.kafka.schemas import JsonSchemaDeserializer
from app.kafka.serde import Deserializer, decode_key, decode_value

logger = logging.getLogger(__name__)

# (topic, partition) -> the offset of the next record to read, as Kafka commits it.
Offsets = Mapping[tuple[str, int], int]
Place = tuple[str, int]
RevokeCallback = Callable[[set[Place]], Awaitable[None]]
# Given a record whose key or value did not decode (as read: bytes) and the error.
UndecodableCallback = Callable[[KafkaMessage, Exception], None]


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """aiokafka's listener: tracks the assignment and runs the client's revoke callbacks."""

    def __init__(self, client: "KafkaConsumerClient") -> None:
        self._client = client

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        places = {(tp.topic, tp.partition) for tp in revoked}
        if not places:
            return  # the first join: nothing was held
        self._client.assigned -= places
        for callback in list(self._client.revoke_callbacks):
            try:
                await callback(places)
            except Exception:  # one failing callback must not keep the group waiting
                logger.exception("a revoke callback failed for %s", sorted(places))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._client.assigned = {(tp.topic, tp.partition) for tp in assigned}
        logger.info("assigned partitions %s", sorted(self._client.assigned))


class KafkaConsumerClient(AsyncLifecycle):
    """Typed async facade over `aiokafka.AIOKafkaConsumer`.

    With `config.group_id` the consumer joins that group (partitions shared among its members,
    offsets committed to Kafka). Without one it reads every partition of `config.topics` itself,
    starting where `auto_offset_reset` says, and `commit()` raises `KafkaNoGroupError`.

    Values are decoded as `config.value_format` says (JSON only when asked or when the record
    is marked `content-type: application/json`); pass `value_deserializer` to decode yourself.
    With a `JsonSchemaDeserializer` (app/kafka/schemas.py) values in the Confluent wire format
    are decoded by schema id, and each message carries its `schema_id` and `schema_version`.
    """

    def __init__(
        self,
        *,
        config: KafkaConsumerConfig,
        consumer: AIOKafkaConsumer | None = None,
        key_deserializer: Deserializer | None = None,
        value_deserializer: Deserializer | None = None,
        assign_on_start: bool = True,
    ) -> None:
        self.config = config
        # False: without a group, start with no partition; the caller picks them (`assign()`).
        self._assign_on_start = assign_on_start
        self._consumer = consumer
        self._key_deserializer = key_deserializer or decode_key
        self._value_deserializer = value_deserializer
        self._started = False
        # The group's latest assignment (empty between a revocation and the next assignment).
        self.assigned: set[Place] = set()
        self.revoke_callbacks: list[RevokeCallback] = []

    def on_revoke(self, callback: RevokeCallback) -> None:
        """Await `callback(partitions)` whenever the group takes partitions away, before they
        go to another member (with a group only; call before or after `start()`)."""
        self.revoke_callbacks.append(callback)

    async def start(self) -> None:
        """Connect, then subscribe (with a group) or assign every partition (without one)."""
        if self._started:
            return
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(**self.config.to_aiokafka())
        consumer = self._consumer
        try:
            await consumer.start()
            if self.config.group_id is not None:
                consumer.subscribe(self.config.topics, listener=_Rebalances(self))
            elif self._assign_on_start:
                consumer.assign(await self._all_partitions(consumer))
        except Exception as exc:
            await consumer.stop()
            raise translate(exc) from exc
        self._started = True

    async def _all_partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        partitions = []
        for topic in self.config.topics:
            # Waits for the topic's metadata (a broker that auto-creates topics creates it now).
            ids = await consumer._client._wait_on_metadata(topic)  # aiokafka has no public form
            partitions += [TopicPartition(topic, pid) for pid in sorted(ids)]
        return partitions

    def _require_started(self) -> AIOKafkaConsumer:
        if not self._started or self._consumer is None:
            raise KafkaNotStartedError("the consumer is not started: call start() first")
        return self._consumer

    async def poll(
        self,
        *,
        timeout_ms: int | None = None,
        max_records: int | None = None,
        on_undecodable: UndecodableCallback | None = None,
        places: Iterable[Place] = (),
        key: bytes | None = None,
    ) -> list[KafkaMessage]:
        """Return the records available within `timeout_ms` (at most `max_records`), in
        partition order; an empty list when none arrived. A record whose key or value does not
        decode raises `KafkaSerializationError` (the rest of the batch is lost with it), unless
        `on_undecodable` is given: that record is then passed to it as read (key and value in
        bytes) with the error, and left out of the list. With `places`, only records of those
        partitions are returned (the others' stay buffered); with `key`, only records whose key
        is those bytes (compared before anything is decoded)."""
        consumer = self._require_started()
        try:
            batches = await consumer.getmany(
                *(TopicPartition(*place) for place in places),
                timeout_ms=self.config.poll_timeout_ms if timeout_ms is None else timeout_ms,
                max_records=max_records or self.config.max_poll_records,
            )
        except Exception as exc:
            raise translate(exc) from exc
        records = [
            record
            for part in batches.values()
            for record in part
            if key is None or record.key == key
        ]
        if isinstance(self._value_deserializer, JsonSchemaDeserializer):
            # New schema ids are looked up once, before the batch is decoded.
            await self._value_deserializer.resolve(record.value for record in records)
        if on_undecodable is None:
            return [self._message(record) for record in records]
        messages = []
        for record in records:
            try:
                messages.append(self._message(record))
            except Exception as exc:
                on_undecodable(_as_read(record), exc)
        return messages

    def _message(self, record: ConsumerRecord[bytes | None, bytes | None]) -> KafkaMessage:
        headers = dict(record.headers)
        deserializer = self._value_deserializer
        if deserializer is None and self._key_deserializer is decode_key:
            # The library's own decoding: the values' types are known, nothing to validate.
            return KafkaMessage.decoded(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                timestamp_ms=record.timestamp if record.timestamp >= 0 else None,
                key=decode_key(record.key),
                value=decode_value(record.value, headers, self.config.value_format),
                headers=headers,
            )
        schema = None
        if isinstance(deserializer, JsonSchemaDeserializer):
            schema = deserializer.schema_of(record.value)
            if schema is None:  # a plain value: decoded as without the registry
                deserializer = None
        if deserializer is not None:
            value: Any = deserializer(record.value)
        else:
            value = decode_value(record.value, headers, self.config.value_format)
        return KafkaMessage(
            schema_id=schema.schema_id if schema is not None else None,
            schema_version=schema.version if schema is not None else None,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp if record.timestamp >= 0 else None,
            key=self._key_deserializer(record.key),
            value=value,
            headers=headers,
        )

    async def assign_new_partitions(self) -> list[tuple[str, int]]:
        """Without a group: look the topics up again and start reading partitions added since
        (from their beginning; whatever they hold is new). Returns the partitions added.

        Topics that do not exist yet are skipped until they do. With a group, Kafka's
        rebalancing does this and the call returns `[]`.
        """
        consumer = self._require_started()
        if self.config.group_id is not None:
            return []
        try:
            # A fresh view of the whole cluster: the client only tracks assigned topics.
            cluster = await consumer._client.fetch_all_metadata()  # aiokafka has no public form
        except Exception as exc:
            raise translate(exc) from exc
        current = consumer.assignment()
        known = {
            TopicPartition(topic, pid)
            for topic in self.config.topics
            for pid in cluster.partitions_for_topic(topic) or ()
        }
        added = sorted(known - current)
        if not added:
            return []
        # assign() replaces the assignment and forgets positions: carry them over.
        positions = {tp: await consumer.position(tp) for tp in current}
        consumer.assign([*current, *added])
        for tp, offset in positions.items():
            consumer.seek(tp, offset)
        await consumer.seek_to_beginning(*added)
        return [(tp.topic, tp.partition) for tp in added]

    async def rewind(self, records_per_partition: int) -> None:
        """Move every assigned partition back to its last `records_per_partition` records (or
        its beginning): a group-less reader refills a recent-records view this way."""
        consumer = self._require_started()
        partitions = sorted(consumer.assignment())
        if not partitions:
            return
        try:
            beginnings = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
        except Exception as exc:
            raise translate(exc) from exc
        for tp in partitions:
            consumer.seek(tp, max(beginnings[tp], ends[tp] - records_per_partition))

    async def end_offsets(self) -> dict[Place, int]:
        """The offset after the last record of every assigned partition, asked of the broker
        now (a reader that must reach what a topic held when it started waits for these)."""
        consumer = self._require_started()
        partitions = sorted(consumer.assignment())
        if not partitions:
            return {}
        try:
            ends = await consumer.end_offsets(partitions)
        except Exception as exc:
            raise translate(exc) from exc
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    def seek(self, place: Place, offset: int) -> None:
        """Read `place` from `offset` on (records already fetched past it are dropped)."""
        consumer = self._require_started()
        try:
            consumer.seek(TopicPartition(*place), offset)
        except Exception as exc:
            raise translate(exc) from exc

    async def partitions_of(self, topic: str) -> list[int]:
        """The partition ids of `topic`, sorted (the list a producer's partitioner is given)."""
        consumer = self._require_started()
        try:
            ids = await consumer._client._wait_on_metadata(topic)  # aiokafka has no public form
        except Exception as exc:
            raise translate(exc) from exc
        return sorted(ids)

    def assign(self, places: Iterable[Place]) -> None:
        """Without a group: read exactly `places` from now on (positions set by `seek()`)."""
        consumer = self._require_started()
        try:
            consumer.assign([TopicPartition(*place) for place in places])
        except Exception as exc:
            raise translate(exc) from exc

    async def position(self, place: Place) -> int:
        """The offset of the next record `poll()` returns from `place`."""
        consumer = self._require_started()
        try:
            position: int = await consumer.position(TopicPartition(*place))
        except Exception as exc:
            raise translate(exc) from exc
        return position

    async def offsets_for_time(
        self, places: Iterable[Place], timestamp_ms: int
    ) -> dict[Place, int]:
        """Per partition, the first offset whose record timestamp is at or after `timestamp_ms`
        (Kafka's ListOffsets by time); a partition with none gets its end offset."""
        consumer = self._require_started()
        partitions = [TopicPartition(*place) for place in places]
        try:
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, timestamp_ms))
            ends = await consumer.end_offsets(partitions)
        except Exception as exc:
            raise translate(exc) from exc
        return {
            (tp.topic, tp.partition): ends[tp] if found.get(tp) is None else found[tp].offset
            for tp in partitions
        }

    async def seek_to_committed(self, places: Iterable[Place]) -> dict[Place, int | None]:
        """Move each partition to the group's committed offset as the broker has it now (no
        commit yet: where `auto_offset_reset` says). Returns the committed offsets."""
        consumer = self._require_started()
        found: dict[Place, int | None] = {}
        try:
            for place in places:
                tp = TopicPartition(*place)
                committed = await consumer.committed(tp)
                found[place] = committed
                if committed is not None:
                    consumer.seek(tp, committed)
                elif self.config.auto_offset_reset == "earliest":
                    await consumer.seek_to_beginning(tp)
                elif self.config.auto_offset_reset == "latest":
                    await consumer.seek_to_end(tp)
        except Exception as exc:
            raise translate(exc) from exc
        return found

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end, per assigned partition, as of the last fetch (partitions
        not fetched yet are left out)."""
        consumer = self._require_started()
        lags = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            lags[(tp.topic, tp.partition)] = max(0, highwater - await consumer.position(tp))
        return lags

    async def commit(self, offsets: Offsets | None = None) -> None:
        """Commit the offsets of everything polled so far, or exactly `offsets`.

        Raises `KafkaNoGroupError` without a `group_id`: offsets belong to a group.
        """
        consumer = self._require_started()
        if self.config.group_id is None:
            raise KafkaNoGroupError(
                "commit() needs a consumer group: set KafkaConsumerConfig.group_id"
            )
        explicit = (
            {TopicPartition(topic, part): offset for (topic, part), offset in offsets.items()}
            if offsets is not None
            else None
        )
        try:
            await consumer.commit(explicit)
        except Exception as exc:
            error = translate(exc)
            if isinstance(error, KafkaCommitError):
                raise error from exc
            raise KafkaCommitError(f"commit failed: {error}") from exc

    async def close(self) -> None:
        """Leave the group (if any) and release connections. Does not commit."""
        consumer, self._consumer = self._consumer, None
        self._started = False
        self.assigned = set()
        if consumer is not None:
            try:
                await consumer.stop()
            except asyncio.CancelledError:
                if cancelling():
                    raise
                # aiokafka's fetcher awaits the offset lookups it cancelled (pending while the
                # broker is away) and lets their cancellation escape stop(), before the client's
                # connections are closed: that cancellation is not the caller's.
                await consumer._client.close()  # aiokafka has no public form


def next_offsets(messages: list[KafkaMessage]) -> dict[tuple[str, int], int]:
    """The offsets to commit after `messages`: one past the highest offset per partition."""
    offsets: dict[tuple[str, int], int] = {}
    for message in messages:
        place = (message.topic, message.partition)
        offsets[place] = max(offsets.get(place, 0), message.offset + 1)
    return offsets


def _as_read(record: "ConsumerRecord[bytes | None, bytes | None]") -> KafkaMessage:
    """A record with its key and value as read (bytes), nothing decoded."""
    return KafkaMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp if record.timestamp >= 0 else None,
        key=record.key,
        value=record.value,
        headers=dict(record.headers),
    )
