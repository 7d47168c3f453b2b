"""The broker goes away and comes back under a running service: what it reads in the background
follows again. GET /messages and /messages/stream show a record written after the restart, the
spool drains, a new checkpoint is signed, and the log says once that Kafka went away and once
that it is back instead of a line per failed attempt."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.embedded import EmbeddedKafka, EmbeddedKafkaCluster
from app.recent.buffer import RecentRecords
from app.recent.reader import RecentRecordsReader
from app.settings import Settings
from tests.helpers.broker import in_thread_start, in_thread_stop
from tests.helpers.cluster import partition_states, wait_for_partitions
from tests.helpers.integrity import SigningKey
from tests.helpers.kafka import new_topic
from tests.helpers.metrics import metric, spool_metrics
from tests.helpers.polling import eventually
from tests.helpers.service import Launch, LiveService
from tests.helpers.sse import sse_events

# Seconds a record written after the broker is back may take to show; generous (reconnecting
# backs off up to 10 s, and the machine may be busy).
FOLLOW_BOUND_S = 60
OUTAGE_S = 15
# Across a 15 s outage: the away and back lines and a few rate-limited ones, not one per retry.
MAX_NOISY_LINES = 30


def event(user: str, n: int) -> dict[str, Any]:
    return {"user_id": user, "model": "m", "prompt": f"p{n}", "response": "r"}


async def shown(client: httpx.AsyncClient, event_id: str) -> bool:
    """True once GET /messages lists the record of `event_id`."""
    answer = await client.get("/messages", params={"limit": 50})
    return answer.status_code == 200 and any(
        m["value"].get("event_id") == event_id for m in answer.json()["messages"]
    )


async def streamed(events: AsyncIterator[dict[str, str]], event_id: str) -> None:
    """Read the stream until the record of `event_id` arrives."""
    async for sse in events:
        if (
            sse.get("event") == "message"
            and json.loads(sse["data"])["value"].get("event_id") == event_id
        ):
            return


async def following(client: httpx.AsyncClient, expected: float) -> bool:
    """True when the gauge `rg_messages_consumer_connected` reads `expected`."""
    scraped = (await client.get("/metrics")).text
    return metric(scraped, "rg_messages_consumer_connected") == expected


def noisy_lines(log: str) -> list[str]:
    """The service's WARNING and ERROR lines (JSON lines; anything else is not the service's)."""
    lines = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("WARNING", "ERROR"):
            lines.append(line)
    return lines


async def accepted(client: httpx.AsyncClient, user: str) -> str:
    """POST /audit until it is accepted (a cluster electing a new leader answers 503 for a
    few seconds); the event id."""
    deadline = time.monotonic() + FOLLOW_BOUND_S
    while True:
        answer = await client.post("/audit", json=event(user, 1))
        if answer.status_code in (201, 202):
            event_id: str = answer.json()["event_id"]
            return event_id
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(0.5)


async def check_following(service: LiveService, user: str) -> None:
    """A record written now shows in GET /messages and in an open /messages/stream."""
    async with (
        httpx.AsyncClient(base_url=service.url, timeout=30) as client,
        client.stream("GET", "/messages/stream", params={"key": user}) as stream,
    ):
        events = sse_events(stream)
        assert (await anext(events))["comment"] == "subscribed"
        event_id = await accepted(client, user)
        await eventually(lambda: shown(client, event_id), timeout_s=FOLLOW_BOUND_S)
        await asyncio.wait_for(streamed(events, event_id), FOLLOW_BOUND_S)
        await eventually(lambda: following(client, 1.0), timeout_s=FOLLOW_BOUND_S)


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_messages_follow_again_after_the_broker_restarts(
    own_broker: EmbeddedKafka, tmp_path: Path, start_service: Launch, how: str
) -> None:
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    service = await asyncio.to_thread(
        start_service, bootstrap, tmp_path / "run", audit_topic=topic, produce_timeout_s="3"
    )
    await asyncio.to_thread(service.wait_ready)
    await check_following(service, "before")

    await asyncio.to_thread(own_broker.stop if how == "stop" else own_broker.kill)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        await eventually(lambda: following(client, 0.0), timeout_s=FOLLOW_BOUND_S)
    await asyncio.sleep(3)
    await in_thread_start(own_broker)

    await check_following(service, "after")


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_the_messages_reader_keeps_reconnecting_until_the_broker_is_back(
    own_broker: EmbeddedKafka, how: str
) -> None:
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    settings = Settings(_env_file=None, kafka_bootstrap_servers=bootstrap, audit_topic=topic)
    recent = RecentRecords([topic], max_records=100, max_bytes=1_000_000)
    reader = RecentRecordsReader(settings, recent, refresh_s=1, reconnect_max_s=1)
    reader.start()
    try:
        await asyncio.wait_for(reader.connected.wait(), FOLLOW_BOUND_S)
        await asyncio.to_thread(own_broker.stop if how == "stop" else own_broker.kill)

        async def disconnected() -> bool:
            return not reader.connected.is_set()

        await eventually(disconnected, timeout_s=FOLLOW_BOUND_S)
        # Before: aiokafka let the cancellation of its pending requests escape the consumer's
        # stop(), and the reader's task ended there, silently, as if the service had stopped it.
        await asyncio.sleep(3)
        assert reader.running
        await in_thread_start(own_broker)
        await asyncio.wait_for(reader.connected.wait(), FOLLOW_BOUND_S)
    finally:
        await reader.close()


async def test_with_spool_and_signing_every_background_task_recovers_and_the_log_stays_short(
    own_broker: EmbeddedKafka, tmp_path: Path, start_service: Launch
) -> None:
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    key_file = tmp_path / "signing.key.pem"
    key_file.write_bytes(SigningKey.generate().private_pem())
    key_file.chmod(0o600)  # a private key others may read stops the start
    service = await asyncio.to_thread(
        start_service,
        bootstrap,
        tmp_path / "run",
        audit_topic=topic,
        produce_timeout_s="3",
        spool_dir=str(tmp_path / "spool"),
        spool_after_s="1",
        audit_signing_key_file=str(key_file),
        audit_checkpoint_s="0.5",
    )
    await asyncio.to_thread(service.wait_ready)
    await check_following(service, "before")
    logged_before = len(service.log().splitlines())

    await in_thread_stop(own_broker)
    down_since = time.monotonic()
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        spooled: list[dict[str, Any]] = []
        while time.monotonic() - down_since < OUTAGE_S:
            answer = await client.post("/audit", json=event("during", len(spooled)))
            assert answer.status_code == 202, answer.text
            spooled.append(answer.json())
            await asyncio.sleep(1)
        await in_thread_start(own_broker)

        async def drained() -> bool:
            return (await spool_metrics(client))["rg_spool_records"] == 0

        # The forwarder sends what was spooled during the outage, without a restart.
        await eventually(drained, timeout_s=FOLLOW_BOUND_S)
        await eventually(lambda: shown(client, spooled[-1]["event_id"]), timeout_s=FOLLOW_BOUND_S)
        await check_following(service, "after")
        last = (await client.post("/audit", json=event("after", 2))).json()

        async def signed() -> bool:
            answer = await client.get("/audit/checkpoint")
            return answer.status_code == 200 and answer.json()["seq"] >= last["seq"]

        # The checkpointer signs what was written after the outage.
        await eventually(signed, timeout_s=FOLLOW_BOUND_S)

    outage_log = "\n".join(service.log().splitlines()[logged_before:])
    noisy = noisy_lines(outage_log)
    print(
        f"\n[fault] broker away {OUTAGE_S}s with spool and signing: {len(spooled)} spooled; "
        f"{len(noisy)} WARNING/ERROR lines logged from the outage on"
    )
    assert "Kafka unreachable since" in outage_log
    assert "Kafka back after" in outage_log
    assert len(noisy) < MAX_NOISY_LINES, "\n".join(noisy)


async def test_messages_follow_after_their_leader_is_killed_and_after_the_whole_cluster_restarts(
    cluster: EmbeddedKafkaCluster, tmp_path: Path, start_service: Launch
) -> None:
    # One partition: one leader to kill, which every record of the test goes through.
    service = await asyncio.to_thread(
        start_service,
        cluster.bootstrap_servers,
        tmp_path / "run",
        audit_topic_partitions="1",
        produce_timeout_s="5",
    )
    await asyncio.to_thread(service.wait_ready)
    await wait_for_partitions(
        cluster,
        service.audit_topic,
        lambda states: len(states) == 1 and len(states[0].isr) == 3,
        timeout_s=30,
    )
    await check_following(service, "before")
    (state,) = await partition_states(cluster.nodes[0].bootstrap_servers, service.audit_topic)
    await asyncio.to_thread(cluster.node(state.leader).kill)
    await check_following(service, "leader-killed")
    # Then the whole cluster goes (every node killed) and comes back.
    for node in cluster.nodes:
        await asyncio.to_thread(node.kill)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        await eventually(lambda: following(client, 0.0), timeout_s=FOLLOW_BOUND_S)
    await asyncio.to_thread(cluster.start)
    await check_following(service, "cluster-restarted")
