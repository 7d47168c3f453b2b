"""POST /audit's two handlers (app/api/lean.py) answer alike: the lean one serves the common
case, the declared FastAPI route anything else. Each check runs against both; an extra query
parameter (which the route ignores) sends a request to the declared route."""

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.app import ServiceFactory, assert_contract_error
from tests.helpers.kafka import records_in
from tests.helpers.service import LiveService, running_service

EVENT = {
    "user_id": "user-42",
    "model": "gpt-4o",
    "prompt": "What is our refund window?",
    "response": "Fourteen days.",
    "metadata": {"app": "support-bot"},
}
KEYS = {"rg-test-writer": ["audit:write"], "rg-test-reader": ["messages:read"]}
# The lean handler takes no query but `wait`; `via` makes it decline.
PATHS = {"lean": "/audit?", "declared": "/audit?via=declared&"}


@pytest.fixture(params=list(PATHS))
def path(request: pytest.FixtureRequest) -> str:
    via: str = request.param
    return PATHS[via]


async def test_acked_and_replayed_alike(
    service: ServiceFactory, kafka_bootstrap: str, topic: str, path: str
) -> None:
    event = {**EVENT, "event_id": "evt-lean-1"}
    async with service() as client:
        first = await client.post(path, json=event)
        again = await client.post(path, json=event)
        queued = await client.post(path + "wait=false", json={**event, "event_id": "evt-lean-2"})
    assert first.status_code == again.status_code == 201, first.text
    assert first.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    receipt: dict[str, Any] = first.json()
    assert receipt["status"] == "acked"
    assert set(receipt) == {
        "event_id",
        "topic",
        "partition",
        "offset",
        "timestamp_utc",
        "digest",
        "writer",
        "seq",
        "chain",
        "status",
    }
    assert queued.status_code == 202
    assert queued.json()["status"] == "queued"
    assert queued.json()["partition"] is None
    assert await records_in(kafka_bootstrap, topic) == 2


async def test_keys_and_scopes_checked_alike(service: ServiceFactory, path: str) -> None:
    async with service(api_keys=KEYS) as client:
        missing = await client.post(path, json=EVENT)
        unknown = await client.post(path, json=EVENT, headers={"X-API-Key": "nope"})
        scope = await client.post(path, json=EVENT, headers={"X-API-Key": "rg-test-reader"})
        two = await client.post(
            path,
            json=EVENT,
            headers={"X-API-Key": "rg-test-writer", "Authorization": "Bearer other"},
        )
        bearer = await client.post(
            path, json=EVENT, headers={"Authorization": "Bearer rg-test-writer"}
        )
    assert "API key is required" in assert_contract_error(missing, 401, "unauthorized")["message"]
    assert assert_contract_error(unknown, 401, "unauthorized")["message"] == "unknown API key"
    assert "audit:write" in assert_contract_error(scope, 403, "forbidden")["message"]
    assert "send one API key" in assert_contract_error(two, 401, "unauthorized")["message"]
    assert bearer.status_code == 201, bearer.text


async def test_the_lean_handler_leaves_what_it_does_not_read_to_the_route(
    service: ServiceFactory,
) -> None:
    async with service() as client:
        # Values of `wait` and content types the lean handler does not take: the route's.
        yes = await client.post("/audit?wait=yes", json=EVENT)
        typed = await client.post(
            "/audit",
            content=b'{"user_id":"u","model":"m","prompt":"p","response":"r"}',
            headers={"content-type": "application/vnd.audit+json"},
        )
        bad_key = await client.post("/audit", json=EVENT, headers={"idempotency-key": "a b"})
        invalid = await client.post("/audit", json={**EVENT, "prompt": ""})
    assert yes.status_code == 201, yes.text
    assert typed.status_code == 201, typed.text
    assert_contract_error(bad_key, 422, "invalid_request")
    error = assert_contract_error(invalid, 422, "invalid_request")
    assert [detail["field"] for detail in error["details"]] == ["body.prompt"]


async def test_publish_answers_alike(service: ServiceFactory, topic: str, path: str) -> None:
    path = path.replace("/audit", "/publish")
    record = {"topic": f"{topic}-p", "key": "k", "value": {"n": 1}, "headers": {"h": "v"}}
    async with service() as client:
        acked = await client.post(path, json=record)
        queued = await client.post(path + "wait=false", json=record)
        refused = await client.post(path, json={**record, "topic": topic})
        invalid = await client.post(path, json={**record, "partition": "3"})
    assert acked.status_code == 201, acked.text
    assert acked.headers["content-type"] == "application/json"
    assert set(acked.json()) == {"topic", "partition", "offset", "timestamp_ms", "status"}
    assert acked.json()["status"] == "acked"
    assert queued.status_code == 202
    assert queued.json()["status"] == "queued"
    assert_contract_error(refused, 403, "topic_not_allowed")
    error = assert_contract_error(invalid, 422, "invalid_request")
    assert [detail["field"] for detail in error["details"]] == ["body.partition"]


@pytest.fixture(scope="module")
def served(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The served process with the writer's key."""
    with running_service(
        kafka_bootstrap, tmp_path_factory.mktemp("lean"), api_keys=json.dumps(KEYS)
    ) as service:
        yield service


@pytest.mark.parametrize("content_type", ["application/json", "application/vnd.x+json"])
def test_a_client_gone_mid_body_is_logged_499_without_a_traceback(
    served: LiveService, content_type: str
) -> None:
    # A valid key, 10 of 100 declared bytes, then the client closes: it was a 500 of the
    # service's with two tracebacks (ClientDisconnect escaped the handler).
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST /audit HTTP/1.1\r\nHost: rg\r\nContent-Type: {content_type}\r\n"
            "X-API-Key: rg-test-writer\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"user_id"'
        )
    deadline = time.monotonic() + 10
    while "POST /audit 499" not in served.log():
        assert time.monotonic() < deadline, served.log()[-2000:]
        time.sleep(0.1)
    assert "Traceback" not in served.log()
    assert "POST /audit 500" not in served.log()
    exposition = httpx.get(f"{served.url}/metrics", timeout=10).text
    assert 'status="500"' not in exposition
