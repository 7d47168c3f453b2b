"""GET /metrics: Prometheus text, and the counters move with the traffic (real broker)."""

import asyncio
import re

import httpx

from tests.helpers.app import ServiceFactory, reader_connected

EVENT = {"user_id": "u1", "model": "m", "prompt": "p", "response": "r"}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series of the exposition (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


async def test_the_counters_move_with_requests_and_records(
    service: ServiceFactory, topic: str
) -> None:
    async with service(max_body_bytes=4 * 1024 * 1024) as client:
        await reader_connected(client)
        before = await scrape(client)
        for _ in range(3):
            assert (await client.post("/audit", json=EVENT)).status_code == 201
        await client.post(
            "/audit", json={**EVENT, "prompt": "x" * 700_000, "response": "y" * 700_000}
        )
        await client.post("/audit", json={"user_id": ""})
        assert (
            await client.post("/publish", json={"topic": f"{topic}-p", "value": 1})
        ).status_code == 201
        await client.get("/no-such-route")
        for _ in range(50):  # the consumer of GET /messages catches up
            after = await scrape(client)
            caught_up = sample(after, "rg_messages_consumer_lag", topic=topic) == 0
            if sample(after, "rg_messages_buffer_records", topic=topic) == 3 and caught_up:
                break
            await asyncio.sleep(0.1)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("rg_http_requests_total", method="POST", route="/audit", status="201") == 3
    assert moved("rg_http_requests_total", method="POST", route="/audit", status="413") == 1
    assert moved("rg_http_requests_total", method="POST", route="/audit", status="422") == 1
    assert moved("rg_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert moved("rg_http_request_duration_seconds_count", method="POST", route="/audit") == 5
    assert moved("rg_kafka_records_produced_total", endpoint="audit") == 3
    assert moved("rg_kafka_records_produced_total", endpoint="publish") == 1
    assert moved("rg_kafka_records_failed_total", endpoint="audit", code="record_too_large") == 1
    assert moved("rg_kafka_produce_duration_seconds_count", endpoint="audit") == 3
    assert sample(after, "rg_messages_buffer_records", topic=topic) == 3
    assert sample(after, "rg_messages_buffer_bytes", topic=topic) > 0
    assert "rg_messages_consumer_lag{" in after
    assert sample(after, "rg_messages_consumer_lag", topic=topic) == 0


async def test_queued_records_are_counted_when_kafka_acknowledges_them(
    service: ServiceFactory,
) -> None:
    async with service() as client:
        assert (await client.post("/audit?wait=false", json=EVENT)).status_code == 202
        for _ in range(50):
            text = await scrape(client)
            if sample(text, "rg_kafka_records_produced_total", endpoint="audit") == 1:
                break
            await asyncio.sleep(0.1)
    assert sample(text, "rg_kafka_records_produced_total", endpoint="audit") == 1
