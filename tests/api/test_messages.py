"""GET /messages and GET /messages/stream against the real broker."""

import asyncio
import functools
import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.kafka import KafkaProducerClient, KafkaUnknownPartitionError
from tests.helpers.app import (
    ServiceFactory,
    assert_contract_error,
    reader_connected,
    services_of,
)
from tests.helpers.metrics import metric
from tests.helpers.polling import eventually
from tests.helpers.service import Launch, LiveService
from tests.helpers.sse import sse_events

EVENT = {"user_id": "u1", "model": "m", "prompt": "p", "response": "r"}


async def wait_for_messages(
    client: httpx.AsyncClient, count: int, timeout_s: float = 20, **params: Any
) -> dict[str, Any]:
    """GET /messages until it holds `count` records."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = await client.get("/messages", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        if page["count"] >= count or time.monotonic() > deadline:
            assert page["count"] == count, page
            return page
        await asyncio.sleep(0.1)


async def test_audit_records_show_newest_first(service: ServiceFactory, topic: str) -> None:
    async with service() as client:
        await reader_connected(client)
        receipts = [
            (await client.post("/audit", json={**EVENT, "request_id": f"r{i}"})).json()
            for i in range(3)
        ]
        page = await wait_for_messages(client, 3)
    assert [m["value"]["request_id"] for m in page["messages"]] == ["r2", "r1", "r0"]
    newest = page["messages"][0]
    assert newest["topic"] == topic
    assert newest["key"] == "u1"
    assert newest["value_encoding"] == "json"
    assert newest["value"]["event_id"] == receipts[2]["event_id"]
    assert newest["headers"]["rg-digest"] == receipts[2]["digest"]
    assert (newest["partition"], newest["offset"]) == (
        receipts[2]["partition"],
        receipts[2]["offset"],
    )


async def test_filters_by_topic_key_time_and_limit(
    service: ServiceFactory, producer: KafkaProducerClient, topic: str
) -> None:
    other = f"{topic}-other"
    # An hour apart, both recent: the broker's retention would delete a record from 1970.
    now_ms = int(time.time() * 1000)
    await producer.publish(other, "old", key="k1", timestamp_ms=now_ms - 3_600_000)
    await producer.publish(other, "new", key="k2", timestamp_ms=now_ms)
    half_an_hour_ago = datetime.fromtimestamp(now_ms / 1000 - 1800, UTC).isoformat()
    await producer.publish(topic, {"x": 1}, key="k1")
    async with service(messages_topics=[topic, other]) as client:
        await wait_for_messages(client, 3)
        by_topic = await wait_for_messages(client, 2, topic=other)
        by_key = await wait_for_messages(client, 2, key="k1")
        since = await wait_for_messages(client, 1, since=half_an_hour_ago, topic=other)
        limited = (await client.get("/messages", params={"limit": 1})).json()
    assert [m["value"] for m in by_topic["messages"]] == ["new", "old"]
    assert {m["topic"] for m in by_key["messages"]} == {topic, other}
    assert since["messages"][0]["value"] == "new"
    assert since["messages"][0]["value_encoding"] == "text"
    assert limited["count"] == 1


async def test_after_a_restart_the_buffer_is_refilled_with_the_newest_records(
    service: ServiceFactory, producer: KafkaProducerClient, create_topic: Any
) -> None:
    target = await create_topic(partitions=2)
    for i in range(10):
        await producer.publish(
            target, i, key=f"k{i}", partition=i % 2, timestamp_ms=int(time.time() * 1000) + i
        )
    async with service(messages_topics=[target], messages_buffer=4) as client:
        page = await wait_for_messages(client, 4)
    assert [m["value"] for m in page["messages"]] == [9, 8, 7, 6]


async def test_partitions_added_later_are_read(
    service: ServiceFactory, producer: KafkaProducerClient, create_topic: Any, kafka_bootstrap: str
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions  # noqa: PLC0415

    target = await create_topic(partitions=1)
    async with service(messages_topics=[target], messages_refresh_s=0.2) as client:
        await reader_connected(client)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({target: NewPartitions(total_count=3)})
        finally:
            await admin.close()

        # The brokers' metadata learns of the new partitions a moment after the controller.
        async def published() -> bool:
            try:
                await producer.publish(target, "on partition 2", partition=2)
            except KafkaUnknownPartitionError:
                return False
            return True

        await eventually(published, timeout_s=30)
        page = await wait_for_messages(client, 1)
    assert page["messages"][0]["partition"] == 2


async def newest_shown(client: httpx.AsyncClient, i: int) -> list[dict[str, Any]]:
    """GET /messages until the record with value `{"i": i}` is the newest; its messages."""
    recent = services_of(client).recent
    deadline = time.monotonic() + 20
    while True:
        assert all(n <= recent.max_records for n in recent.counts().values())
        assert all(n <= recent.max_bytes for n in recent.sizes().values())
        messages: list[dict[str, Any]] = (
            await client.get("/messages", params={"limit": 1000})
        ).json()["messages"]
        if messages and messages[0]["value"]["i"] == i:
            return messages
        assert time.monotonic() < deadline, messages
        await asyncio.sleep(0.05)


async def test_the_buffer_stays_within_its_record_and_byte_bounds(
    service: ServiceFactory, producer: KafkaProducerClient, topic: str
) -> None:
    async with service(messages_topics=[topic], messages_buffer=5) as client:
        await reader_connected(client)
        for i in range(30):
            await producer.publish(topic, {"i": i, "pad": "x" * 100}, key="k")
        messages = await newest_shown(client, 29)
    assert [m["value"]["i"] for m in messages] == [29, 28, 27, 26, 25]
    async with service(messages_topics=[topic], messages_buffer_bytes=2048) as client:
        messages = await newest_shown(client, 29)
        size = services_of(client).recent.sizes()[topic]
    assert 0 < size <= 2048
    assert 1 <= len(messages) < 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"topic": "not-kept"}, "query.topic"),
        ({"since": "last tuesday"}, "query.since"),
        ({"since": "0.5"}, "query.since"),
        ({"since": "1790000000"}, "query.since"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "query.since"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"limit": "many"}, "query.limit"),
    ],
)
async def test_invalid_queries_get_422_naming_the_parameter(
    service: ServiceFactory, params: dict[str, Any], field: str
) -> None:
    async with service() as client:
        answers = [await client.get("/messages", params=params)]
        if "limit" not in params:  # the stream has no limit (and would run forever)
            answers.append(await client.get("/messages/stream", params=params))
    for answer in answers:
        error = assert_contract_error(answer, 422, "invalid_request")
        assert error["details"][0]["field"] == field


async def test_a_stream_client_receives_records_published_after_it_connected(
    live_service: LiveService,
) -> None:
    async with (
        httpx.AsyncClient(base_url=live_service.url, timeout=30) as client,
        client.stream("GET", "/messages/stream", params={"key": "sse-user"}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        assert (await anext(events))["comment"] == "subscribed"
        # Another user's record first: the key filter must hold it back.
        await client.post("/audit", json={**EVENT, "user_id": "someone-else"})
        receipt = (await client.post("/audit", json={**EVENT, "user_id": "sse-user"})).json()
        event = await asyncio.wait_for(anext(events), 20)
    assert event["event"] == "message"
    data = json.loads(event["data"])
    assert data["key"] == "sse-user"
    assert data["value"]["event_id"] == receipt["event_id"]
    # The service runs without a signing key: on its chain, coverage unknown.
    assert (data["writer"], data["seq"], data["checkpointed"]) == (
        receipt["writer"],
        receipt["seq"],
        None,
    )
    assert event["id"] == f"{live_service.audit_topic}/{receipt['partition']}/{receipt['offset']}"


async def newest_is(client: httpx.AsyncClient, n: int) -> bool:
    """Whether the newest record GET /messages shows has value `n`."""
    shown = (await client.get("/messages", params={"limit": 1})).json()["messages"]
    return bool(shown) and shown[0]["value"]["n"] == n


async def test_a_stream_client_that_stops_reading_is_cut_off_and_disconnected(
    start_service: Launch, kafka_bootstrap: str, producer: KafkaProducerClient, tmp_path: Path
) -> None:
    # A subscriber's backlog held up to 1,000 records of any size outside the buffer's bound,
    # for as long as its client kept the connection without reading.
    service = start_service(
        kafka_bootstrap,
        tmp_path,
        messages_buffer_bytes=str(2**20),
        messages_stream_send_timeout_s="3",
    )
    await asyncio.to_thread(service.wait_ready)
    host, port = service.url.removeprefix("http://").split(":")
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.settimeout(30)
    stalled.connect((host, int(port)))
    with stalled:
        stalled.sendall(b"GET /messages/stream HTTP/1.1\r\nHost: rg\r\n\r\n")
        head = b""
        while b": subscribed" not in head:
            head += stalled.recv(4096)
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        # Then it reads nothing while records of 200 KB arrive, one after another (each
        # kept before the next is written): sent while the socket buffers take them, then
        # held in its backlog until that passes 1 MiB, while a send waits.
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            for n in range(300):
                await producer.publish(service.audit_topic, {"n": n, "pad": "x" * 200_000})
                await eventually(functools.partial(newest_is, client, n), timeout_s=30)
                text = (await client.get("/metrics")).text
                if metric(text, "rg_messages_stream_send_timeouts_total", default=0) == 1:
                    break
            assert metric(text, "rg_messages_stream_cut_total", default=0) == 1
            assert metric(text, "rg_messages_stream_send_timeouts_total", default=0) == 1
        # The connection was closed: what the socket buffers held, then the end.
        received = len(head)
        while chunk := stalled.recv(1 << 20):
            received += len(chunk)
    print(f"\nthe stalled client had {received / 2**20:.1f} MiB to read when it was let go")
    assert "client that read nothing for 3.0s" in service.log()


async def test_records_of_other_topics_neither_claim_a_chain_place_nor_push_records_out(
    service: ServiceFactory, producer: KafkaProducerClient, topic: str
) -> None:
    # Their publisher chooses headers and timestamps: rg-writer/rg-seq of the real writer were
    # shown as that writer's place, and records stamped ahead evicted every genuine one at once.
    other = f"{topic}-other"
    async with service(messages_topics=[topic, other], messages_buffer=5) as client:
        await reader_connected(client)
        receipt = (await client.post("/audit", json=EVENT)).json()
        forged = {
            "rg-writer": receipt["writer"],
            "rg-seq": str(receipt["seq"]),
            "rg-redaction": "mask;v=1",
        }
        # 50 minutes ahead: within what the broker accepts (log.message.timestamp.after.max.ms).
        ahead_ms = int(time.time() * 1000) + 50 * 60 * 1000
        for n in range(5):
            await producer.publish(
                other, {"n": n}, key="ahead", timestamp_ms=ahead_ms, headers=forged
            )
        ahead = await wait_for_messages(client, 5, topic=other)
        assert {(r["writer"], r["seq"], r["checkpointed"]) for r in ahead["messages"]} == {
            (None, None, None)
        }
        await producer.publish(other, {"n": 5}, key="genuine")

        async def genuine_shown() -> bool:
            page = (await client.get("/messages", params={"topic": other})).json()
            return bool(page["messages"]) and page["messages"][0]["key"] == "genuine"

        await eventually(genuine_shown, timeout_s=20)
        shown = (await client.get("/messages", params={"limit": 1000})).json()["messages"]
    for record in shown:
        place = (record["writer"], record["seq"])
        if record["topic"] == topic:
            assert place == (receipt["writer"], receipt["seq"])
        else:
            assert place == (None, None)
            assert record["checkpointed"] is None
            if record["key"] == "ahead":  # its headers are shown as they came
                assert record["headers"]["rg-writer"] == receipt["writer"]
