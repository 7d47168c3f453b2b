"""The transactional producers of exactly-once processing: one per input partition held.

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
"""

import asyncio
import logging
from collections.abc import Callable, Iterable

from app.kafka.config import KafkaProducerConfig
from app.kafka.consumer import Place
from app.kafka.producer import KafkaProducerClient

logger = logging.getLogger(__name__)

ProducerFactory = Callable[[KafkaProducerConfig], KafkaProducerClient]


def transactional_id(prefix: str, place: Place) -> str:
    """The id of the producer that writes for input partition `place`."""
    topic, partition = place
    return f"{prefix}.{topic}.{partition}"


class PartitionProducers:
    """The transactional producers of the partitions a processor holds, by partition."""

    def __init__(
        self,
        template: KafkaProducerConfig,
        *,
        prefix: str,
        transaction_timeout_ms: int,
        factory: ProducerFactory | None = None,
    ) -> None:
        self._template = template
        self._prefix = prefix
        self._timeout_ms = transaction_timeout_ms
        self._factory = factory or (lambda config: KafkaProducerClient(config=config))
        self._producers: dict[Place, KafkaProducerClient] = {}

    @property
    def held(self) -> set[Place]:
        """The partitions with a started producer."""
        return set(self._producers)

    @property
    def transactional_ids(self) -> list[str]:
        """The ids of the producers held, sorted."""
        return sorted(transactional_id(self._prefix, place) for place in self._producers)

    def get(self, place: Place) -> KafkaProducerClient:
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
