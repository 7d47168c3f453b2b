"""POST /publish against the real broker; records read back by an independent consumer."""

import asyncio
import time
from typing import Any

import pytest

from tests.helpers.app import BOTH_HANDLERS, ServiceFactory, assert_contract_error
from tests.helpers.kafka import read_all, topic_names

# Every test here runs against both handlers of POST /publish (app/api/lean.py).
pytestmark = BOTH_HANDLERS

# Recent on purpose: the broker's retention deletes records older than 7 days.
A_MINUTE_AGO_MS = int(time.time() * 1000) - 60_000
DAY_MS = 86_400_000
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_record_is_published_with_key_headers_partition_and_timestamp(
    service: ServiceFactory, create_topic: Any, kafka_bootstrap: str
) -> None:
    target = await create_topic(partitions=3)
    body = {
        "topic": target,
        "value": {"order_id": 981, "items": [1, 2], "paid": True},
        "key": "order-981",
        "headers": {"source": "checkout"},
        "partition": 2,
        "timestamp_ms": A_MINUTE_AGO_MS,
    }
    async with service() as client:
        response = await client.post("/publish", json=body, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["topic"] == target
    assert result["partition"] == 2
    assert result["status"] == "acked"
    assert result["timestamp_ms"] == A_MINUTE_AGO_MS

    [record] = await read_all(kafka_bootstrap, target, 1)
    assert (record.partition, record.offset) == (2, result["offset"])
    assert record.key == "order-981"
    assert record.value == body["value"]
    assert record.timestamp_ms == A_MINUTE_AGO_MS
    assert record.header("source") == "checkout"
    assert record.header("content-type") == "application/json"
    assert record.header("traceparent") == TRACEPARENT


@pytest.mark.parametrize(
    ("value", "stored"),
    [("plain text", "plain text"), (42, 42), ([1, "a"], [1, "a"]), ({}, {})],
)
async def test_any_json_value_is_published(
    service: ServiceFactory, topic: str, kafka_bootstrap: str, value: Any, stored: Any
) -> None:
    async with service() as client:
        response = await client.post("/publish", json={"topic": f"{topic}-v", "value": value})
    assert response.status_code == 201, response.text
    [record] = await read_all(kafka_bootstrap, f"{topic}-v", 1)
    assert record.value == stored
    assert record.key is None


async def test_a_tombstone_needs_a_key(
    service: ServiceFactory, topic: str, kafka_bootstrap: str
) -> None:
    async with service() as client:
        keyless = await client.post("/publish", json={"topic": f"{topic}-t", "value": None})
        tombstone = await client.post("/publish", json={"topic": f"{topic}-t", "key": "k"})
    assert_contract_error(keyless, 422, "invalid_record")
    assert tombstone.status_code == 201
    [record] = await read_all(kafka_bootstrap, f"{topic}-t", 1)
    assert (record.key, record.value) == ("k", None)


async def test_wait_false_answers_202_queued(
    service: ServiceFactory, topic: str, kafka_bootstrap: str
) -> None:
    async with service() as client:
        response = await client.post(
            "/publish", params={"wait": "false"}, json={"topic": f"{topic}-q", "value": {"n": 1}}
        )
    assert response.status_code == 202
    assert response.json() == {
        "topic": f"{topic}-q",
        "partition": None,
        "offset": None,
        "timestamp_ms": None,
        "status": "queued",
    }
    [record] = await read_all(kafka_bootstrap, f"{topic}-q", 1)
    assert record.value == {"n": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": 1}, "body.topic"),
        ({"topic": "", "value": 1}, "body.topic"),
        ({"topic": "has space", "value": 1}, "body.topic"),
        ({"topic": "x" * 250, "value": 1}, "body.topic"),
        ({"topic": "ok", "key": 5}, "body.key"),
        ({"topic": "ok", "headers": {"h": 1}}, "body.headers.h"),
        ({"topic": "ok", "partition": -1}, "body.partition"),
        ({"topic": "ok", "partition": True}, "body.partition"),
        ({"topic": "ok", "partition": "0"}, "body.partition"),
        ({"topic": "ok", "timestamp_ms": False}, "body.timestamp_ms"),
        ({"topic": "ok", "timestamp_ms": 1.5}, "body.timestamp_ms"),
        ({"topic": ".", "value": 1}, "body.topic"),
        ({"topic": "ok", "timestamp_ms": "soon"}, "body.timestamp_ms"),
        ({"topic": "ok", "timestamp_ms": 253_402_300_800_000}, "body.timestamp_ms"),
        ({"topic": "ok", "extra": True}, "body.extra"),
    ],
)
async def test_invalid_requests_get_422_naming_the_field(
    service: ServiceFactory, body: dict[str, Any], field: str
) -> None:
    async with service() as client:
        response = await client.post("/publish", json=body)
    error = assert_contract_error(response, 422, "invalid_request")
    assert field in [detail["field"] for detail in error["details"]]


@pytest.mark.parametrize("name", ["rg-writer", "rg-seq", "RG-Chain", "rg-redaction", "rg-x"])
async def test_headers_named_rg_are_the_service_s_own_and_refused_naming_the_header(
    service: ServiceFactory, topic: str, name: str
) -> None:
    # They would make a published record look like an audit record in GET /messages.
    body = {"topic": f"{topic}-h", "value": 1, "headers": {"source": "a", name: "0"}}
    async with service() as client:
        response = await client.post("/publish", json=body)
    error = assert_contract_error(response, 422, "invalid_request")
    [detail] = error["details"]
    assert detail["field"] == "body.headers"
    assert name in detail["message"]


@pytest.mark.parametrize("shift_ms", [-2 * DAY_MS, 2 * DAY_MS, None])
async def test_a_timestamp_more_than_a_day_from_now_gets_422_naming_the_field(
    service: ServiceFactory, topic: str, shift_ms: int | None
) -> None:
    # Far-future records would outlive retention and push genuine ones out of GET /messages.
    stamp = 0 if shift_ms is None else int(time.time() * 1000) + shift_ms
    async with service() as client:
        response = await client.post(
            "/publish", json={"topic": f"{topic}-t", "value": 1, "timestamp_ms": stamp}
        )
    error = assert_contract_error(response, 422, "invalid_request")
    [detail] = error["details"]
    assert detail["field"] == "body.timestamp_ms"
    assert "a day" in detail["message"]


async def test_a_timestamp_within_a_day_of_now_is_kept(
    service: ServiceFactory, topic: str, kafka_bootstrap: str
) -> None:
    stamp = int(time.time() * 1000) + DAY_MS - 60_000
    async with service() as client:
        response = await client.post(
            "/publish", json={"topic": f"{topic}-t", "value": 1, "timestamp_ms": stamp}
        )
    assert response.status_code == 201, response.text
    [record] = await read_all(kafka_bootstrap, f"{topic}-t", 1)
    assert record.timestamp_ms == stamp


@pytest.mark.parametrize("value", [b"NaN", b'{"n": [-Infinity]}', b"18446744073709551616"])
async def test_numbers_that_cannot_be_stored_as_sent_get_422(
    service: ServiceFactory, value: bytes
) -> None:
    # Python's JSON parser takes them; the record would hold null or fail to encode.
    body = b'{"topic": "ok", "key": "k", "value": ' + value + b"}"
    async with service() as client:
        response = await client.post(
            "/publish", content=body, headers={"content-type": "application/json"}
        )
    error = assert_contract_error(response, 422, "invalid_request")
    assert [detail["field"] for detail in error["details"]] == ["body.value"]


async def test_a_partition_the_topic_lacks_gets_422(
    service: ServiceFactory, create_topic: Any
) -> None:
    target = await create_topic(partitions=1)
    async with service() as client:
        response = await client.post("/publish", json={"topic": target, "value": 1, "partition": 5})
    assert_contract_error(response, 422, "unknown_partition")


@pytest.mark.parametrize(
    "target",
    [
        "AUDIT",
        "CHECKPOINTS",
        "WRITERS",
        "KEYS",
        "__consumer_offsets",
        "__anything",
        "_schemas",
        "connect-configs",
    ],
)
async def test_the_service_s_own_and_infrastructure_topics_are_refused_whatever_the_allow_list(
    service: ServiceFactory, topic: str, target: str
) -> None:
    own = {
        "AUDIT": topic,
        "CHECKPOINTS": f"{topic}.checkpoints",
        "WRITERS": f"{topic}.writers",
        "KEYS": f"{topic}.keys",  # the erasure keys (RG_ERASURE)
    }
    name = own.get(target, target)
    async with service(publish_topics=["*"]) as client:
        response = await client.post("/publish", json={"topic": name, "value": 1})
    assert_contract_error(response, 403, "topic_not_allowed")


async def test_without_rg_publish_topics_no_topic_is_published_or_created(
    service: ServiceFactory, topic: str, kafka_bootstrap: str
) -> None:
    async with service(publish_topics=[]) as client:
        response = await client.post("/publish", json={"topic": f"{topic}-new", "value": 1})
    error = assert_contract_error(response, 403, "topic_not_allowed")
    assert "RG_PUBLISH_TOPICS" in error["message"]
    assert f"{topic}-new" not in await topic_names(kafka_bootstrap)


async def test_the_allow_list_takes_names_and_patterns(service: ServiceFactory, topic: str) -> None:
    async with service(publish_topics=[f"{topic}.events.*", f"{topic}-exact"]) as client:
        allowed = await client.post("/publish", json={"topic": f"{topic}.events.a", "value": 1})
        exact = await client.post("/publish", json={"topic": f"{topic}-exact", "value": 1})
        refused = await client.post("/publish", json={"topic": f"{topic}.other", "value": 1})
    assert allowed.status_code == 201
    assert exact.status_code == 201
    assert_contract_error(refused, 403, "topic_not_allowed")


async def test_beyond_the_in_flight_bound_publish_answers_503_overloaded(
    service: ServiceFactory, topic: str
) -> None:
    async with service(max_in_flight=1) as client:
        answers = await asyncio.gather(
            *(client.post("/publish", json={"topic": f"{topic}-o", "value": i}) for i in range(30))
        )
    statuses = {a.status_code for a in answers}
    assert statuses == {201, 503}
    for answer in answers:
        if answer.status_code == 503:
            assert_contract_error(answer, 503, "overloaded")
