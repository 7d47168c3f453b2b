"""GET /messages says whether a signed checkpoint covers each audit record (`checkpointed`),
on the session broker, with a key made as `ractogateway-kafka keys generate` makes it."""

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from app.integrity.checkpoint import new_checkpoint
from app.integrity.keys import generate, load_signing_key
from app.kafka import KafkaProducerClient
from tests.api.test_messages import EVENT
from tests.helpers.app import ServiceFactory, reader_connected, services_of
from tests.helpers.kafka import new_topic
from tests.helpers.polling import eventually


async def shown(client: httpx.AsyncClient, count: int, timeout_s: float = 20) -> list[Any]:
    """GET /messages until it holds `count` records; them, oldest first."""
    deadline = time.monotonic() + timeout_s
    while True:
        page = (await client.get("/messages", params={"limit": 1000})).json()
        if page["count"] >= count or time.monotonic() > deadline:
            assert page["count"] == count, page
            return list(reversed(page["messages"]))
        await asyncio.sleep(0.1)


async def test_an_audit_record_is_checkpointed_once_a_signed_checkpoint_covers_it(
    service: ServiceFactory,
    producer: KafkaProducerClient,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    _, key_file, _ = generate(tmp_path / "keys")
    other = await new_topic(kafka_bootstrap, partitions=1)
    async with service(
        messages_topics=[topic, other],
        publish_topics=[other],
        audit_signing_key_file=key_file,
        audit_checkpoint_s=3600,  # the timer never fires: the test writes the checkpoint
    ) as client:
        services = services_of(client)
        await reader_connected(client)
        first = (await client.post("/audit", json=EVENT)).json()
        assert first["seq"] == 0
        (record,) = await shown(client, 1)
        assert (record["writer"], record["seq"]) == (services.chain.writer_id, 0)
        assert record["checkpointed"] is False
        # Not on this writer's chain: another producer on the audit topic, another topic.
        await producer.publish(topic, {"no": "chain"}, key="k")
        answer = await client.post("/publish", json={"topic": other, "value": {"x": 1}})
        assert answer.status_code == 201, answer.text
        await shown(client, 3)

        assert services.checkpoints.checkpointer is not None
        checkpoint = await services.checkpoints.checkpointer.checkpoint()
        assert checkpoint is not None
        assert checkpoint.seq == 0
        second = (await client.post("/audit", json=EVENT)).json()
        assert second["seq"] == 1
        records = await shown(client, 4)
    by_place = {(m["topic"], m["writer"], m["seq"]): m["checkpointed"] for m in records}
    writer = services.chain.writer_id
    assert by_place == {
        (topic, writer, 0): True,
        (topic, None, None): None,
        (other, None, None): None,
        (topic, writer, 1): False,  # after the checkpoint: not covered yet
    }


async def test_without_a_signing_key_coverage_is_unknown(
    service: ServiceFactory,
) -> None:
    async with service() as client:
        await reader_connected(client)
        receipt = (await client.post("/audit", json=EVENT)).json()
        (record,) = await shown(client, 1)
    assert (record["writer"], record["seq"]) == (receipt["writer"], receipt["seq"])
    assert record["checkpointed"] is None


async def test_another_writers_records_are_covered_by_its_signed_checkpoints_on_the_topic(
    service: ServiceFactory, producer: KafkaProducerClient, topic: str, tmp_path: Path
) -> None:
    _, key_file, _ = generate(tmp_path / "keys")
    _, stranger_key_file, _ = generate(tmp_path / "stranger")
    signed = {"audit_signing_key_file": key_file, "audit_checkpoint_s": 3600}
    # An earlier start (another writer): its last checkpoint is written at shutdown.
    async with service(**signed) as client:
        earlier = [(await client.post("/audit", json=EVENT)).json() for _ in range(2)]
    # A writer whose checkpoint is signed with a key this service does not know.
    stranger = load_signing_key(stranger_key_file)
    forged = new_checkpoint(writer="b" * 32, seq=0, chain="c" * 64, key_id=stranger.key_id)
    await producer.publish(f"{topic}.checkpoints", forged.sign(stranger.private).to_bytes())
    await producer.publish(
        topic, {"x": 1}, headers={"content-type": "application/json", **chained("b" * 32, 0)}
    )
    async with service(**signed) as client:
        await reader_connected(client)
        own = (await client.post("/audit", json=EVENT)).json()
        coverage = services_of(client).coverage

        async def both_checkpoints_read() -> bool:
            return coverage.writers + coverage.ignored == 2

        await eventually(both_checkpoints_read, timeout_s=20)
        records = await shown(client, 4)
    assert [(m["writer"], m["seq"], m["checkpointed"]) for m in records] == [
        (earlier[0]["writer"], 0, True),
        (earlier[0]["writer"], 1, True),
        ("b" * 32, 0, None),  # its checkpoint does not verify: not trusted
        (own["writer"], 0, False),
    ]
    assert coverage.writers == 1
    assert coverage.ignored == 1


def chained(writer: str, seq: int) -> dict[str, str]:
    """Chain headers as a writer sets them (the link is not checked by the view)."""
    return {"rg-writer": writer, "rg-seq": str(seq), "rg-chain": "sha256:" + "c" * 64}
