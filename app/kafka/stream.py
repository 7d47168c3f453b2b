"""`KafkaStreamProcessor`: consume a batch, transform it, publish the outputs, commit.

At-least-once (the default): outputs are acknowledged before the batch's offsets are committed,
so a crash reprocesses a batch and never skips one. A failing batch goes to the dead-letter
topic when one is configured (and processing continues); otherwise the error propagates,
nothing committed.

Exactly-once (`processing_guarantee="exactly_once"`): the batch is split by input partition, and
each part is one transaction of that partition's own producer (app/kafka/transactions.py):
begin, call the handler, send its outputs (or the dead letters), add the consumed offsets,
commit. A handler or send failure aborts the transaction and moves the partition back to where
the last commit left it; the outputs of an aborted batch never reach read_committed readers.

A record whose key or value does not decode (the consumer's `value_format="json"` meeting
non-JSON, a deserializer that raises) never reaches the handler and never stops the loop: it
goes to the dead-letter topic with the error when one is configured, else it is logged and
skipped (`undecodable` counts both), and its offset is committed with its batch.

In a consumer group, a revocation waits for the batch in progress (its commit or abort happens
while the partitions are still this member's), and a batch read while partitions were being
taken away is dropped: the group's next owner reads it again from the committed offsets.
"""

import asyncio
import logging
import time

from app.kafka.batches import (
    Handler,
    call_handler,
    dead_letters,
    places,
    plan_outputs,
    publish_outputs,
)
from app.kafka.config import KafkaStreamConfig
from app.kafka.consumer import KafkaConsumerClient, Place, next_offsets
from app.kafka.errors import (
    KafkaClientError,
    KafkaConfigError,
    KafkaFencedError,
    KafkaHandlerError,
    KafkaRebalancedError,
)
from app.kafka.models import KafkaMessage, KafkaPublishRequest
from app.kafka.producer import KafkaProducerClient
from app.kafka.transactions import PartitionProducers

logger = logging.getLogger(__name__)


class KafkaStreamProcessor:
    """Batched consume → transform → publish → commit loop.

    The handler takes the batch (a list of `KafkaMessage`) and returns, sync or async:
    - None: consume only;
    - a sequence of `KafkaPublishRequest`: each published as it says;
    - a sequence of other values: each published as a value to `output_topic`.

    With `exactly_once` the handler is called once per input partition of a batch (one
    transaction each; calls never overlap), `producer` is not written to: its config is the
    template of the transactional producers, and `close()` closes those.
    """

    def __init__(
        self,
        *,
        consumer: KafkaConsumerClient,
        producer: KafkaProducerClient | None = None,
        config: KafkaStreamConfig | None = None,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.config = config or KafkaStreamConfig()
        if self.config.commit_on_success and consumer.config.group_id is None:
            raise KafkaConfigError(
                "commit_on_success needs a consumer group: set the consumer's group_id "
                "(or commit_on_success=False)"
            )
        if self.config.dead_letter_topic is not None and producer is None:
            raise KafkaConfigError("a dead_letter_topic needs a producer to write to it")
        self._stopping = asyncio.Event()
        # Held while partitions are claimed and while a batch is processed; a revocation takes
        # it too, so it waits for the batch in progress.
        self._cycle = asyncio.Lock()
        self._handler_calls = asyncio.Lock()
        self._revocations = 0
        # Records of the batch being collected that did not decode, with the error.
        self._undecodable: list[tuple[KafkaMessage, Exception]] = []
        self.undecodable = 0
        self._producers = self._partition_producers()
        if consumer.config.group_id is not None:
            consumer.on_revoke(self._on_revoke)

    @property
    def exactly_once(self) -> bool:
        """True when batches are processed in transactions."""
        return self.config.processing_guarantee == "exactly_once"

    def _partition_producers(self) -> PartitionProducers[KafkaProducerClient] | None:
        if not self.exactly_once:
            return None
        group = self.consumer.config.group_id
        if group is None:
            raise KafkaConfigError(
                "exactly_once commits offsets for a consumer group: set the consumer's group_id"
            )
        if self.consumer.config.enable_auto_commit:
            raise KafkaConfigError("exactly_once commits offsets itself: enable_auto_commit=False")
        if self.producer is None:
            raise KafkaConfigError(
                "exactly_once needs a producer: its config is the template of the "
                "transactional producers"
            )
        return PartitionProducers(
            self.producer.config,
            prefix=self.config.transactional_id_prefix or group,
            transaction_timeout_ms=self.config.transaction_timeout_ms,
            factory=lambda config: KafkaProducerClient(config=config),
        )

    @property
    def transactional_ids(self) -> list[str]:
        """The ids of the transactional producers held now (none at least-once)."""
        return self._producers.transactional_ids if self._producers is not None else []

    async def close(self) -> None:
        """Close the transactional producers (exactly_once); the consumer and `producer`
        stay the caller's to close."""
        if self._producers is not None:
            await self._producers.close()

    async def _on_revoke(self, places: set[Place]) -> None:
        self._revocations += 1
        async with self._cycle:
            if self._producers is not None:
                await self._producers.release(places)

    def stop(self) -> None:
        """Ask `run()` to return after the batch in progress is published and committed."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called."""
        return self._stopping.is_set()

    async def collect_batch(self) -> list[KafkaMessage]:
        """Poll until `batch_size` records arrived or `max_wait_ms` passed (or `stop()`)."""
        batch: list[KafkaMessage] = []
        deadline = time.monotonic() + self.config.max_wait_ms / 1000
        while (taken := len(batch) + len(self._undecodable)) < self.config.batch_size:
            if self.stopping:
                break
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 and taken:
                break
            batch += await self.consumer.poll(
                timeout_ms=max(0, min(self.config.poll_timeout_ms, remaining_ms)),
                max_records=self.config.batch_size - taken,
                on_undecodable=lambda message, exc: self._undecodable.append((message, exc)),
            )
            if remaining_ms <= 0:
                break
        return batch

    async def process_once(self, handler: Handler, *, output_topic: str | None = None) -> int:
        """Run one batch cycle; return how many records were consumed."""
        revocations = self._revocations
        if self._producers is not None:
            async with self._cycle:
                await self._claim_assigned(self._producers)
        batch = await self.collect_batch()
        undecodable, self._undecodable = self._undecodable, []
        if not batch and not undecodable:
            return 0
        async with self._cycle:
            if self._producers is None and self._revocations != revocations:
                self._read_again(batch + [message for message, _ in undecodable])
                return 0
            if self._producers is not None:
                return await self._process_in_transactions(
                    batch, undecodable, handler, output_topic
                )
            requests = await self._requests_for(batch, handler, output_topic) if batch else []
            requests += self._undecodable_letters(undecodable)
            if self.producer is not None:
                await publish_outputs(requests, self.producer, self.config)
            if self.config.commit_on_success:
                await self._commit(batch + [message for message, _ in undecodable])
            self.undecodable += len(undecodable)
            return len(batch) + len(undecodable)

    def _undecodable_letters(
        self, undecodable: list[tuple[KafkaMessage, Exception]]
    ) -> list[KafkaPublishRequest]:
        """The dead letters of records that did not decode (none without a dead-letter topic:
        they are logged and skipped)."""
        topic = self.config.dead_letter_topic
        letters: list[KafkaPublishRequest] = []
        for message, exc in undecodable:
            logger.warning(
                "the record at %s/%d/%d did not decode (%s: %.200s); %s",
                message.topic,
                message.partition,
                message.offset,
                type(exc).__name__,
                exc,
                f"sending it to {topic!r}" if topic is not None else "skipped",
            )
            if topic is not None:
                letters += dead_letters([message], exc, topic)
        return letters

    async def _commit(self, batch: list[KafkaMessage]) -> None:
        try:
            await self.consumer.commit(next_offsets(batch))
        except KafkaRebalancedError as exc:
            # This member was out of the group for a while (a pause longer than its session):
            # the partitions' next holder reads the batch again. At least once still holds.
            logger.warning(
                "offsets up to %s not committed: the group rebalanced meanwhile (%s); the "
                "partitions' next holder processes those records again",
                places(batch),
                exc,
            )

    def _read_again(self, batch: list[KafkaMessage]) -> None:
        """Drop a batch read while partitions were revoked (committing it could commit
        partitions now another member's): those still or again assigned are moved back to the
        batch's first record. At least once: this may repeat records, it never skips one.
        (Exactly-once needs none of this: a revocation releases the partitions' producers, and
        records of partitions without one are never processed.)"""
        logger.info(
            "dropped a batch of %d from %s: partitions were revoked while it was read",
            len(batch),
            places(batch),
        )
        firsts: dict[Place, int] = {}
        for message in batch:
            firsts.setdefault((message.topic, message.partition), message.offset)
        for place, offset in firsts.items():
            if place in self.consumer.assigned:
                self.consumer.seek(place, offset)

    async def _requests_for(
        self, batch: list[KafkaMessage], handler: Handler, output_topic: str | None
    ) -> list[KafkaPublishRequest]:
        """What to publish for `batch`: the handler's outputs, or its dead letters."""
        try:
            async with self._handler_calls:
                requests = plan_outputs(await call_handler(handler, batch), output_topic)
                if requests and self.producer is None:
                    raise KafkaConfigError(
                        "the handler returned outputs but the processor has no producer"
                    )
                return requests
        except Exception as exc:
            if self.config.dead_letter_topic is None:
                raise KafkaHandlerError(
                    f"handler failed on a batch of {len(batch)} from "
                    f"{places(batch)}: {type(exc).__name__}: {exc}"
                ) from exc
            logger.warning(
                "handler failed on %d record(s) from %s (%s); sending them to %r",
                len(batch),
                places(batch),
                exc,
                self.config.dead_letter_topic,
            )
            return dead_letters(batch, exc, self.config.dead_letter_topic)

    async def _claim_assigned(self, producers: PartitionProducers[KafkaProducerClient]) -> None:
        """Producers for the partitions the group assigned since the last cycle (fencing
        their previous holders), then those partitions moved to their committed offsets."""
        wanted = set(self.consumer.assigned)
        await producers.release(producers.held - wanted)
        new = sorted(wanted - producers.held)
        if new:
            await producers.claim(new)
            await self.consumer.seek_to_committed(new)

    async def _process_in_transactions(
        self,
        batch: list[KafkaMessage],
        undecodable: list[tuple[KafkaMessage, Exception]],
        handler: Handler,
        output_topic: str | None,
    ) -> int:
        assert self._producers is not None  # noqa: S101 - the caller checked
        parts: dict[Place, list[KafkaMessage]] = {}
        for message in batch:
            parts.setdefault((message.topic, message.partition), []).append(message)
        poison: dict[Place, list[tuple[KafkaMessage, Exception]]] = {}
        for message, exc in undecodable:
            place = (message.topic, message.partition)
            parts.setdefault(place, [])
            poison.setdefault(place, []).append((message, exc))
        held = self._producers.held
        # Records of a partition not claimed yet came from a position set before its claim:
        # the claim seeks it to the committed offset, where they are read again.
        outcomes = await asyncio.gather(
            *(
                self._transact(place, records, poison.get(place, []), handler, output_topic)
                for place, records in parts.items()
                if place in held
            ),
            return_exceptions=True,
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        for error in errors:
            if isinstance(error, KafkaFencedError):
                raise error
        if errors:
            raise errors[0]
        return sum(o for o in outcomes if isinstance(o, int))

    async def _transact(
        self,
        place: Place,
        records: list[KafkaMessage],
        undecodable: list[tuple[KafkaMessage, Exception]],
        handler: Handler,
        output_topic: str | None,
    ) -> int:
        """One input partition's part of a batch as one transaction (its records, and the
        dead letters of those that did not decode); the records consumed."""
        assert self._producers is not None  # noqa: S101 - only called under exactly_once
        group = self.consumer.config.group_id
        assert group is not None  # noqa: S101 - checked in __init__
        producer = self._producers.get(place)
        consumed = sorted(records + [message for message, _ in undecodable], key=lambda m: m.offset)
        await producer.begin_transaction()
        try:
            requests = await self._requests_for(records, handler, output_topic) if records else []
            requests += self._undecodable_letters(undecodable)
            await publish_outputs(requests, producer, self.config)
            await producer.send_offsets_to_transaction(next_offsets(consumed), group)
            await producer.commit_transaction()
        except BaseException as exc:
            await self._abort(place, producer, consumed, exc)
            if isinstance(exc, KafkaClientError) and exc.retriable:
                logger.warning(
                    "transaction for %s aborted (%s); reading it again", places(records), exc
                )
                return 0
            raise
        self.undecodable += len(undecodable)
        return len(consumed)

    async def _abort(
        self,
        place: Place,
        producer: KafkaProducerClient,
        records: list[KafkaMessage],
        error: BaseException,
    ) -> None:
        """Abort the open transaction and move `place` back to where the last commit left it
        (the batch's first record): nothing of the batch is visible, all of it is read again."""
        assert self._producers is not None  # noqa: S101 - only called under exactly_once
        try:
            await producer.abort_transaction()
        except KafkaFencedError as fenced:
            raise fenced from error
        except KafkaClientError as failed:
            # Its next holder settles the transaction: drop the producer; the next cycle
            # claims the partition afresh (fencing this one) and seeks to the committed offset.
            logger.warning("could not abort the transaction for %s: %s", places(records), failed)
            await self._producers.release([place])
            return
        self.consumer.seek(place, records[0].offset)

    async def run(
        self,
        handler: Handler,
        *,
        output_topic: str | None = None,
        iterations: int | None = None,
    ) -> int:
        """Run batch cycles until `stop()` (or `iterations` cycles); return records consumed."""
        total = 0
        cycles = 0
        while not self.stopping and (iterations is None or cycles < iterations):
            total += await self.process_once(handler, output_topic=output_topic)
            cycles += 1
        return total
