"""Transactions: the checked transaction calls of one producer, and the transactional producers
of exactly-once processing, one per input partition held.

Why one per input partition, named `<prefix>.<topic>.<partition>`: aiokafka commits the consumed
offsets of a transaction with the group id alone (TxnOffsetCommit v0: no member or generation),
so the group coordinator cannot refuse a member that lost its partitions (KIP-447's fencing).
What fences a stale member is the transactional id: whoever takes over a partition starts a
producer with the same id, and starting it (InitProducerId) bumps the id's epoch and completes
or aborts the transaction the old holder left open. From then on every write or commit of the
old holder is refused (`KafkaFencedError`), and the offsets the new holder reads back are final.
An id per instance would not do: a new member cannot know the old member's id, so it could not
fence it.

The order on taking a partition over is therefore: start its producer (fence), then read the
group's committed offset and seek there, then process. On giving a partition up: no
transaction may be open (the processor finishes or aborts the batch first), then the producer
is closed.

`ProducerTransactions` holds the transaction calls of one producer (`KafkaProducerClient`'s
`begin_transaction()` and its peers hand over to it), as aiokafka keeps its transaction manager
apart from its producer. The pool is given the factory of its producers rather than importing
the client, which imports this module.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from app.kafka.config import KafkaProducerConfig
from app.kafka.consumer import Place
from app.kafka.errors import KafkaClientError, KafkaConfigError, KafkaFencedError, translate
from app.kafka.lifecycle import AsyncLifecycle

logger = logging.getLogger(__name__)

ProducerT = TypeVar("ProducerT", bound=AsyncLifecycle)
ProducerFactory = Callable[[KafkaProducerConfig], ProducerT]


class ProducerTransactions:
    """The transaction calls of one aiokafka producer configured with `config`.

    aiokafka asserts on calls made in the wrong state, and once fenced its sender is gone for
    good: each call checks that first and raises the library's error instead. Each call takes
    the started aiokafka producer; `open()` also takes None (not started, or closed).
    """

    def __init__(self, config: KafkaProducerConfig) -> None:
        self._config = config

    def open(self, producer: AIOKafkaProducer | None) -> bool:
        """True between `begin()` and the end of its commit or abort (also when a send failed
        and only an abort is left)."""
        manager = _transaction_manager(producer)
        return manager is not None and manager.state.name in ("IN_TRANSACTION", "ABORTABLE_ERROR")

    async def begin(self, producer: AIOKafkaProducer) -> None:
        """Open a transaction."""
        self._require_transactional(producer)
        try:
            await producer.begin_transaction()
        except Exception as exc:
            raise self._transaction_error(producer, exc) from exc

    async def send_offsets(
        self, producer: AIOKafkaProducer, offsets: Mapping[tuple[str, int], int], group_id: str
    ) -> None:
        """Add consumed offsets (`(topic, partition) -> next offset`) of consumer group
        `group_id` to the open transaction."""
        self._require_transactional(producer)
        explicit = {TopicPartition(t, p): offset for (t, p), offset in offsets.items()}
        try:
            await producer.send_offsets_to_transaction(explicit, group_id)
        except Exception as exc:
            raise self._transaction_error(producer, exc) from exc

    async def commit(self, producer: AIOKafkaProducer) -> None:
        """Flush the transaction's records and commit it."""
        self._require_transactional(producer)
        try:
            await producer.commit_transaction()
        except Exception as exc:
            raise self._transaction_error(producer, exc) from exc

    async def abort(self, producer: AIOKafkaProducer) -> None:
        """Abort the open transaction (none open: nothing to do, unless fenced)."""
        self._require_transactional(producer)
        if not self.open(producer):
            self._raise_fatal(producer)
            return
        try:
            await producer.abort_transaction()
        except Exception as exc:
            raise self._transaction_error(producer, exc) from exc

    def named(self, error: KafkaClientError) -> KafkaClientError:
        """A fencing error naming the producer's transactional id; any other error as it is."""
        if isinstance(error, KafkaFencedError) and self._config.transactional_id is not None:
            # The broker says the same when a transaction outlived its timeout: name both.
            return KafkaFencedError(
                f"fenced: another instance took over {self._config.transactional_id} (or a "
                f"transaction of it outlived transaction_timeout_ms="
                f"{self._config.transaction_timeout_ms})"
            )
        return error

    def _require_transactional(self, producer: AIOKafkaProducer) -> None:
        if self._config.transactional_id is None:
            raise KafkaConfigError("transactions need a producer with a transactional_id")
        self._raise_fatal(producer)

    def _raise_fatal(self, producer: AIOKafkaProducer) -> None:
        manager = _transaction_manager(producer)
        if manager is None or not manager.is_fatal_error():
            return
        ended = manager.wait_for_transaction_end()
        cause = ended.exception() if ended.done() and not ended.cancelled() else None
        error = self.named(translate(cause or KafkaClientError("the transaction failed")))
        raise error from cause

    def _transaction_error(
        self, producer: AIOKafkaProducer, exc: BaseException
    ) -> KafkaClientError:
        # A call refused for its state after the sender died: report why it died instead.
        self._raise_fatal(producer)
        return self.named(translate(exc))


def _transaction_manager(producer: AIOKafkaProducer | None) -> Any:
    return getattr(producer, "_txn_manager", None)  # aiokafka has no public form


def transactional_id(prefix: str, place: Place) -> str:
    """The id of the producer that writes for input partition `place`."""
    topic, partition = place
    return f"{prefix}.{topic}.{partition}"


class PartitionProducers(Generic[ProducerT]):
    """The transactional producers of the partitions a processor holds, by partition; `factory`
    makes a producer of a config."""

    def __init__(
        self,
        template: KafkaProducerConfig,
        *,
        prefix: str,
        transaction_timeout_ms: int,
        factory: ProducerFactory[ProducerT],
    ) -> None:
        self._template = template
        self._prefix = prefix
        self._timeout_ms = transaction_timeout_ms
        self._factory = factory
        self._producers: dict[Place, ProducerT] = {}

    @property
    def held(self) -> set[Place]:
        """The partitions with a started producer."""
        return set(self._producers)

    @property
    def transactional_ids(self) -> list[str]:
        """The ids of the producers held, sorted."""
        return sorted(transactional_id(self._prefix, place) for place in self._producers)

    def get(self, place: Place) -> ProducerT:
        """The started producer of `place` (KeyError when not held)."""
        return self._producers[place]

    async def claim(self, places: Iterable[Place]) -> None:
        """Start a producer for each of `places` (concurrently); starting fences the previous
        holder of each id and settles its open transaction."""
        new = [place for place in places if place not in self._producers]
        clients = [self._factory(self._config_for(place)) for place in new]
        outcomes = await asyncio.gather(*(c.start() for c in clients), return_exceptions=True)
        failure: BaseException | None = None
        for place, client, outcome in zip(new, clients, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failure = failure or outcome
                await client.close()
            else:
                self._producers[place] = client
                logger.info("holding %s", transactional_id(self._prefix, place))
        if failure is not None:
            raise failure

    async def release(self, places: Iterable[Place]) -> None:
        """Close the producers of `places` (none of them may have a transaction open)."""
        for place in places:
            client = self._producers.pop(place, None)
            if client is not None:
                await client.close()
                logger.info("released %s", transactional_id(self._prefix, place))

    async def close(self) -> None:
        """Close every producer."""
        await self.release(list(self._producers))

    def _config_for(self, place: Place) -> KafkaProducerConfig:
        tid = transactional_id(self._prefix, place)
        return self._template.model_copy(
            update={
                "transactional_id": tid,
                "transaction_timeout_ms": self._timeout_ms,
                "enable_idempotence": True,
                "acks": "all",
            }
        )
