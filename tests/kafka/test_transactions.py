"""Transactions of `KafkaProducerClient` (`app/kafka/transactions.py`) against the real broker."""

import pytest

from app.kafka import (
    KafkaConfigError,
    KafkaFencedError,
    KafkaNotStartedError,
    KafkaProducerClient,
    KafkaProducerConfig,
)
from tests.helpers.kafka import read_all


async def test_unit_transactions_need_a_started_producer() -> None:
    client = KafkaProducerClient(config=KafkaProducerConfig(transactional_id="t"))
    assert (client.transactional_id, client.in_transaction) == ("t", False)
    with pytest.raises(KafkaNotStartedError):
        await client.begin_transaction()


async def test_transactions_need_a_transactional_id(producer: KafkaProducerClient) -> None:
    assert producer.transactional_id is None
    with pytest.raises(KafkaConfigError, match="transactional_id"):
        await producer.begin_transaction()
    with pytest.raises(KafkaConfigError, match="transactional_id"):
        await producer.abort_transaction()


async def test_a_transaction_opens_commits_and_an_abort_with_none_open_does_nothing(
    kafka_bootstrap: str, topic: str
) -> None:
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, transactional_id=topic)
    async with KafkaProducerClient(config=config) as client:
        await client.abort_transaction()
        await client.begin_transaction()
        assert client.in_transaction
        await client.publish(topic, "committed", key="k")
        await client.commit_transaction()
        assert not client.in_transaction
    [message] = await read_all(kafka_bootstrap, topic, 1)
    assert message.value == "committed"


async def test_a_fenced_producer_raises_fenced_naming_its_id(
    kafka_bootstrap: str, topic: str
) -> None:
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, transactional_id=topic)
    async with KafkaProducerClient(config=config) as old:
        await old.begin_transaction()
        await old.publish(topic, "open", key="k")
        async with KafkaProducerClient(config=config):  # starting it fences `old`
            with pytest.raises(KafkaFencedError, match=f"another instance took over {topic}"):
                await old.commit_transaction()
            with pytest.raises(KafkaFencedError, match=f"another instance took over {topic}"):
                await old.abort_transaction()
