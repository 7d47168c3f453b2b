"""The broker is away when the service starts, so events are spooled; once it is back the
forwarder sends them: the chain holds across the outage, each record in Kafka carries the
headers it was spooled with, and events written afterwards continue the same chain."""

from pathlib import Path
from typing import Any

from app.embedded import EmbeddedKafka
from tests.helpers.app import client_for, services_of
from tests.helpers.broker import in_thread_start, in_thread_stop
from tests.helpers.chain import assert_unbroken, chains_of
from tests.helpers.kafka import new_topic, read_all
from tests.helpers.polling import eventually

SPOOLED = 20
AFTER = 10


def event(index: int) -> dict[str, str]:
    return {"user_id": f"user-{index % 3}", "model": "m", "prompt": f"p{index}", "response": "r"}


async def test_spooled_events_keep_their_place_on_the_chain(
    own_broker: EmbeddedKafka, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    await in_thread_stop(own_broker)
    settings: dict[str, Any] = {
        "audit_topic": topic,
        "spool_dir": str(tmp_path / "spool"),
        "spool_after_s": 0.5,
    }
    async with client_for(bootstrap, **settings) as client:
        services = services_of(client)
        spooled = []
        for index in range(SPOOLED):
            response = await client.post("/audit", json=event(index))
            assert response.status_code == 202, response.text
            spooled.append(response.json())
        assert {receipt["status"] for receipt in spooled} == {"spooled"}
        assert [receipt["seq"] for receipt in spooled] == list(range(SPOOLED))
        # Committed to the spool: every position is settled (stored), none lost.
        head = services.chain.durable_head()
        assert head is not None
        assert (head.seq, services.chain.lost) == (SPOOLED - 1, 0)

        await in_thread_start(own_broker)
        spool = services.spool
        assert spool is not None

        async def drained() -> bool:
            return spool.depth == 0

        await eventually(drained, timeout_s=90)
        after = []
        for index in range(SPOOLED, SPOOLED + AFTER):
            response = await client.post("/audit", json=event(index))
            assert response.status_code == 201, response.text
            after.append(response.json())
        writer = services.chain.writer_id

    records = await read_all(bootstrap, topic, SPOOLED + AFTER, value_format="bytes")
    assert len(records) == SPOOLED + AFTER  # nothing written twice
    chains = chains_of(records)
    assert list(chains) == [writer]
    assert_unbroken(writer, chains[writer])
    # Each record carries the position its receipt gave when it was spooled (or acked).
    for receipt, record in zip(spooled + after, chains[writer], strict=True):
        assert record.header("rg-event-id") == receipt["event_id"]
        assert record.header("rg-seq") == str(receipt["seq"])
        assert record.header("rg-chain") == receipt["chain"]
        assert record.header("rg-writer") == receipt["writer"]
