"""POST /audit's and POST /publish's two handlers (app/api/lean.py) answer alike: the lean one
serves the common case, the declared FastAPI route anything else. They make the same checks
(the guard below), and the tests marked `BOTH_HANDLERS` (here, in test_audit.py and
test_publish.py) run against both: an extra query parameter (which the route ignores) sends a
request to the declared route."""

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.routing import iter_route_contexts
from starlette.types import Message

from app.api.deps import Check, get_held_bytes, get_services
from app.api.lean import lean_handler_of
from app.api.openai_proxy import PREFIX as PROXY_PREFIX
from app.api.trace import trace_headers
from app.main import create_app
from app.settings import Settings
from tests.helpers.app import BOTH_HANDLERS, ServiceFactory, assert_contract_error
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
# What both handlers of a lean route read, refusing nothing: the declared one has FastAPI solve
# them, the lean one calls them. Every other dependency of the route is a check.
INPUTS = {get_services, trace_headers, get_held_bytes}


async def test_unit_every_lean_route_makes_the_checks_its_declared_route_solves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A dependency added to the declared route only (a rate limit, a scope) would be skipped
    # by the lean handler, which answers most requests: the lists must stay equal, in order.
    app = create_app(Settings(_env_file=None, kafka_bootstrap_servers=["127.0.0.1:9"]))
    made: list[Check] = []
    monkeypatch.setattr(Check, "__call__", lambda check, request, services: made.append(check))
    served, proxied = [], []
    # The routes as FastAPI serves them (with what an including router adds).
    for route in iter_route_contexts(app.routes):
        lean, path = lean_handler_of(route.original_route), str(route.path)
        if lean is None:
            continue
        solved = [dep.call for dep in route.dependant.dependencies if dep.call not in INPUTS]
        if path.startswith(PROXY_PREFIX):
            # The proxy's lean handler is its declared route's own body (`_proxy`, whose checks
            # depend on the endpoint): a check declared on the route would be skipped by it.
            assert solved == [], (path, solved)
            proxied.append(path)
            continue
        made.clear()
        # The checks pass (recorded, not made); the body does not validate, so the lean
        # handler declines after them.
        assert await lean(_posted(app, path, b"{}")) is None
        named = [f"{call.__module__}.{call.__qualname__}" for call in solved if call]
        assert solved == [check.dependency for check in made], (path, named, made)
        assert made, path
        served.append(path)
    assert sorted(served) == ["/audit", "/audit/batch", "/publish"]
    assert proxied == [PROXY_PREFIX + "{path:path}"] * 2  # POST, and the other methods


def _posted(app: Any, path: str, body: bytes) -> Request:
    """A POST of `body` as JSON, as LeanDispatch hands it to a lean handler."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "app": app,
    }
    return Request(scope, receive)


@BOTH_HANDLERS
async def test_acked_and_replayed_alike(
    service: ServiceFactory, kafka_bootstrap: str, topic: str
) -> None:
    event = {**EVENT, "event_id": "evt-lean-1"}
    async with service() as client:
        first = await client.post("/audit", json=event)
        again = await client.post("/audit", json=event)
        queued = await client.post(
            "/audit", params={"wait": "false"}, json={**event, "event_id": "evt-lean-2"}
        )
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


@BOTH_HANDLERS
async def test_keys_and_scopes_checked_alike(service: ServiceFactory) -> None:
    async with service(api_keys=KEYS) as client:
        missing = await client.post("/audit", json=EVENT)
        unknown = await client.post("/audit", json=EVENT, headers={"X-API-Key": "nope"})
        scope = await client.post("/audit", json=EVENT, headers={"X-API-Key": "rg-test-reader"})
        two = await client.post(
            "/audit",
            json=EVENT,
            headers={"X-API-Key": "rg-test-writer", "Authorization": "Bearer other"},
        )
        bearer = await client.post(
            "/audit", json=EVENT, headers={"Authorization": "Bearer rg-test-writer"}
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


@BOTH_HANDLERS
async def test_publish_answers_alike(service: ServiceFactory, topic: str) -> None:
    record = {"topic": f"{topic}-p", "key": "k", "value": {"n": 1}, "headers": {"h": "v"}}
    async with service() as client:
        acked = await client.post("/publish", json=record)
        queued = await client.post("/publish", params={"wait": "false"}, json=record)
        refused = await client.post("/publish", json={**record, "topic": topic})
        invalid = await client.post("/publish", json={**record, "partition": "3"})
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


async def test_unit_a_fault_in_a_lean_route_is_a_500_with_the_contract_body_logged_and_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The lean routes enter past the framework's 500 wrapper (app.api.lean.LeanApp), which
    # must do its work: the app's 500, the access line and metric, the error raised on for
    # the server to log.
    app = create_app(Settings(_env_file=None, kafka_bootstrap_servers=["127.0.0.1:9"]))

    def fault(check: Check, request: Request, services: Any) -> None:
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr(Check, "__call__", fault)
    caplog.set_level(logging.INFO)
    raising = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=raising, base_url="http://rg") as client:
        with pytest.raises(RuntimeError, match="a bug in a check"):
            await client.post("/audit", json=EVENT)
    answering = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=answering, base_url="http://rg") as client:
        response = await client.post("/audit", json=EVENT)
    error = assert_contract_error(response, 500, "internal_error")
    assert "a bug" not in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert any(r.name == "app.api.errors" and r.exc_info for r in caplog.records)
    lines = [r.fields for r in caplog.records if r.name == "app.access"]  # type: ignore[attr-defined]
    assert [(line["route"], line["status"]) for line in lines] == [("/audit", 500)] * 2
