"""The keys store's reader, with a stand-in for its Kafka consumer (unit: no broker)."""

import asyncio
import os

from aiokafka import TopicPartition

from app.privacy.keystore import KafkaKeyStore
from app.privacy.sealing import Kek
from app.settings import Settings


class _ConsumerStandIn:
    """Answers the reader's calls; `end_offsets` waits until the test lets it finish."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0) -> dict[str, list]:  # type: ignore[type-arg]
        return {}

    def assignment(self) -> set[TopicPartition]:
        return set()

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        self.entered.set()
        await self.release.wait()
        return {}

    async def stop(self) -> None:
        return None


async def test_unit_close_ends_the_reader_even_when_its_cancellation_is_swallowed() -> None:
    # asyncio.wait_for (Python 3.11) returns the inner result instead of raising when the
    # cancellation arrives as the inner call completes: a reader relying on that one
    # cancellation kept polling and close() waited for it forever (a stop that never ended).
    settings = Settings(_env_file=None, audit_topic="t")
    store = KafkaKeyStore(settings, Kek(os.urandom(32)), fresh_s=10.0)
    consumer = _ConsumerStandIn()
    store._consumer = consumer
    store._follower = asyncio.create_task(store._follow())
    await consumer.entered.wait()
    consumer.release.set()  # the inner call completes in the loop's next round...
    closing = asyncio.create_task(store.close())  # ...as the cancellation reaches the reader
    await asyncio.wait({closing}, timeout=5.0)
    assert closing.done(), "close() still waits for the reader"
    assert store._follower.done()
