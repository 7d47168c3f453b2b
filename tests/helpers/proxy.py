"""Reading what the recording proxy wrote: the audit topic's records by event id, their raw
bytes, and the receipt headers checked against the record."""

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.kafka import KafkaMessage
from tests.helpers.kafka import records_of
from tests.helpers.logs import SECRET_MARKER

# The sidecar's own key (X-API-Key) in the proxy's tests; it has audit:write.
SIDECAR_KEY = f"{SECRET_MARKER}-proxy-sidecar"


async def records_by_event(bootstrap: str, topic: str) -> dict[str, list[KafkaMessage]]:
    """Every record of `topic`, grouped by event id (a list, so a duplicate shows)."""
    found: dict[str, list[KafkaMessage]] = {}
    for message in await records_of(bootstrap, topic):
        found.setdefault(message.value["event_id"], []).append(message)
    return found


async def raw_bytes(bootstrap: str, topic: str) -> bytes:
    """Every record's key, value, header names and values as stored, joined: what a grep of
    the topic sees."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        if not partitions:
            await consumer._client._wait_on_metadata(topic)  # aiokafka has no public form
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        chunks: list[bytes] = []
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    chunks += [record.key or b"", record.value or b""]
                    for name, value in record.headers:
                        chunks += [name.encode(), value or b""]
        return b"\n".join(chunks)
    finally:
        await consumer.stop()


def assert_receipt(headers: Mapping[str, str], message: KafkaMessage) -> None:
    """The `X-RG-*` receipt headers of an answer name `message`: its event id, digest, topic,
    partition, offset and its place on the writer's chain."""
    assert headers["x-rg-event-id"] == message.value["event_id"]
    assert headers["x-rg-status"] == "acked"
    assert headers["x-rg-digest"] == message.header("rg-digest")
    assert headers["x-rg-topic"] == message.topic
    assert int(headers["x-rg-partition"]) == message.partition
    assert int(headers["x-rg-offset"]) == message.offset
    writer, seq = headers["x-rg-writer"], headers["x-rg-seq"]
    assert headers["x-rg-proof"] == f"/audit/proof?writer={writer}&seq={seq}"
    assert (message.header("rg-writer"), message.header("rg-seq")) == (writer, seq)


def text_of(messages: list[dict[str, Any]]) -> str:
    """The text parts of GenAI messages, joined."""
    return "".join(
        part["content"] for m in messages for part in m["parts"] if part["type"] == "text"
    )
