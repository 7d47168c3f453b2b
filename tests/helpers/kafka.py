"""Reading and creating topics on a real broker, from a test."""

import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.kafka import (
    KafkaConsumerClient,
    KafkaConsumerConfig,
    KafkaMessage,
)


async def read_all(
    bootstrap: str, topic: str, count: int, *, timeout_s: float = 30, **config: Any
) -> list[KafkaMessage]:
    """Read `count` records of `topic` from the beginning with a group-less library consumer."""
    consumer = KafkaConsumerClient(
        config=KafkaConsumerConfig(
            topics=[topic], bootstrap_servers=bootstrap, auto_offset_reset="earliest", **config
        )
    )
    async with consumer:
        messages: list[KafkaMessage] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < count and time.monotonic() < deadline:
            messages += await consumer.poll(timeout_ms=500)
    assert len(messages) >= count, f"read {len(messages)} of {count} records of {topic}"
    return messages


async def records_in(bootstrap: str, topic: str) -> int:
    """How many records the topic holds (sum of its partitions' end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ids = await consumer._client._wait_on_metadata(topic)  # aiokafka has no public form
        partitions = [TopicPartition(topic, p) for p in ids]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


# What the service creates its audit topic with (400 days, delete): for tests that create an
# audit topic themselves, so that the service's check accepts it.
AUDIT_TOPIC_CONFIGS = {"retention.ms": str(400 * 24 * 3600 * 1000), "cleanup.policy": "delete"}


@dataclass
class TopicDescription:
    """A topic as the broker describes it."""

    partitions: int
    replication: int
    configs: dict[str, str]


async def topic_names(bootstrap: str) -> set[str]:
    """The names of the topics the broker has (asking creates none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def describe_topic(bootstrap: str, topic: str) -> TopicDescription:
    """Partitions, replication factor and effective configs of an existing topic."""
    from aiokafka.admin import AIOKafkaAdminClient  # noqa: PLC0415
    from aiokafka.admin.config_resource import (  # noqa: PLC0415
        ConfigResource,
        ConfigResourceType,
    )

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        assert described["error_code"] == 0, described
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        (resource,) = response.to_object()["resources"]
        return TopicDescription(
            partitions=len(described["partitions"]),
            replication=len(described["partitions"][0]["replicas"]),
            configs={e["config_names"]: e["config_value"] for e in resource["config_entries"]},
        )
    finally:
        await admin.close()


async def new_topic(
    bootstrap: str, partitions: int = 3, configs: dict[str, str] | None = None
) -> str:
    """Create a fresh topic on `bootstrap`, with the configs the service's audit-topic check
    accepts (the tests use it as the audit topic), and `configs` besides."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        name = f"test-{uuid.uuid4().hex}"
        await admin.create_topics(
            [
                NewTopic(
                    name, partitions, 1, topic_configs={**AUDIT_TOPIC_CONFIGS, **(configs or {})}
                )
            ],
            timeout_ms=30_000,
        )
        return name
    finally:
        await admin.close()


async def records_of(bootstrap: str, topic: str) -> list[KafkaMessage]:
    """Every record of `topic` (read up to its end offsets)."""
    total = await records_in(bootstrap, topic)
    return await read_all(bootstrap, topic, total, timeout_s=60) if total else []
