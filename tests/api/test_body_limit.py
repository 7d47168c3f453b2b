"""RG_MAX_BODY_BYTES while reading: declared, chunked, and just under the limit; against the real
`serve` process too, so the server's own HTTP parsing is in the loop. And RG_MAX_IN_FLIGHT_BYTES:
the body's bytes held from before it is read until the request is answered."""

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from app.api.body_limit import BodyLimit, declared_length
from app.auth import ApiKeys
from app.ingest.backpressure import ByteBudget
from app.runtime import BODY_COST
from tests.helpers.app import ServiceFactory, assert_contract_error, services_of
from tests.helpers.metrics import metric
from tests.helpers.raw_http import address_of, exchange
from tests.helpers.service import Launch, LiveService

LIMIT = 4096
COST = BODY_COST  # the budget counts what a body's byte costs in memory


async def chunks(total: int, size: int = 1024) -> AsyncIterator[bytes]:
    """A JSON body sent in pieces, without Content-Length (chunked transfer encoding)."""
    body = b'{"user_id": "u", "model": "m", "prompt": "' + b"x" * total + b'", "response": "r"}'
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_a_declared_length_above_the_limit_is_413_before_reading(
    service: ServiceFactory,
) -> None:
    async with service(max_body_bytes=LIMIT) as client:
        response = await client.post(
            "/audit", content=b"x" * (LIMIT + 1), headers={"content-type": "application/json"}
        )
    error = assert_contract_error(response, 413, "body_too_large")
    assert str(LIMIT) in error["message"]


async def test_a_chunked_body_is_cut_off_once_past_the_limit(service: ServiceFactory) -> None:
    async with service(max_body_bytes=LIMIT) as client:
        response = await client.post(
            "/audit", content=chunks(3 * LIMIT), headers={"content-type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert_contract_error(response, 413, "body_too_large")


async def test_a_body_under_the_limit_passes_whole(service: ServiceFactory) -> None:
    async with service(max_body_bytes=LIMIT) as client:
        chunked = await client.post(
            "/audit", content=chunks(LIMIT // 2), headers={"content-type": "application/json"}
        )
        batch = await client.post("/audit/batch", json={"events": []})
    assert chunked.status_code == 201, chunked.text
    assert chunked.json()["status"] == "acked"
    assert_contract_error(batch, 422, "invalid_request")


async def test_the_served_process_refuses_big_bodies_with_and_without_length(
    live_service: LiveService,
) -> None:
    big = 2 * 1024 * 1024  # the default limit is 1 MiB
    async with httpx.AsyncClient(base_url=live_service.url, timeout=30) as client:
        declared = await client.post(
            "/audit", content=b"x" * big, headers={"content-type": "application/json"}
        )
        chunked = await client.post(
            "/audit",
            content=chunks(big, size=64 * 1024),
            headers={"content-type": "application/json"},
        )
        after = await client.get("/healthz")
    assert_contract_error(declared, 413, "body_too_large")
    assert_contract_error(chunked, 413, "body_too_large")
    assert after.status_code == 200


async def test_a_refused_body_is_counted_under_its_route(service: ServiceFactory) -> None:
    async with service(max_body_bytes=LIMIT) as client:
        await client.post("/audit", content=b"x" * (LIMIT + 1))
        metrics = (await client.get("/metrics")).text
    assert 'rg_http_requests_total{method="POST",route="/audit",status="413"} 1.0' in metrics


# RG_MAX_IN_FLIGHT_BYTES while reading: the middleware alone around a recording app (unit), then
# the whole service.

Budgeted = tuple[BodyLimit, ByteBudget, list[int]]


def budgeted(
    max_in_flight_bytes: int, *, read_after: bool = False, keys: ApiKeys | None = None
) -> Budgeted:
    """BodyLimit (limit LIMIT) with a budget, around an app that notes the bytes held while it
    runs and answers 200 (after one more `receive()` when `read_after`)."""
    budget = ByteBudget(max_in_flight_bytes)
    seen: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append(budget.held)
        if read_after:
            await receive()
        if message["type"] == "http.request":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    routes = [Route("/audit", app, methods=["POST"])]
    middleware = BodyLimit(
        app, max_bytes=LIMIT, budget=budget, routes=routes, keys=keys or ApiKeys(None)
    )
    return middleware, budget, seen


async def call(
    middleware: BodyLimit,
    messages: list[Message],
    *,
    length: int | None = None,
    path: str = "/audit",
    key: bytes | None = None,
) -> tuple[list[Message], int]:
    """One POST through `middleware`: the messages it sent, and how many it received."""
    headers = [(b"content-length", str(length).encode())] if length is not None else []
    if key is not None:
        headers.append((b"x-api-key", key))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    pending = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent, len(messages) - len(pending)


def piece(body: bytes, *, more: bool = False) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def answer(sent: list[Message]) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    """Status, headers and JSON body of what the middleware sent."""
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), json.loads(body) if body else {}


async def test_unit_the_declared_length_is_held_while_the_app_runs_then_released() -> None:
    middleware, budget, seen = budgeted(10_000 * COST)
    sent, _ = await call(middleware, [piece(b"x" * 3000)], length=3000)
    assert answer(sent)[0] == 200
    assert (seen, budget.held, budget.high_water) == ([3000 * COST], 0, 3000 * COST)


async def test_unit_a_declared_length_beyond_the_budget_is_503_before_reading() -> None:
    middleware, budget, seen = budgeted(10_000 * COST)
    others = budget.reserve(8000 * COST)
    sent, received = await call(middleware, [piece(b"x" * 3000)], length=3000)
    status, headers, body = answer(sent)
    assert (status, body["error"]["code"], headers[b"retry-after"]) == (503, "overloaded", b"1")
    assert headers[b"connection"] == b"close"  # what the server read ahead goes with it
    assert "RG_MAX_IN_FLIGHT_BYTES" in body["error"]["message"]
    assert (received, seen, budget.held, budget.refusals.bytes) == (0, [], 8000 * COST, 1)
    others.release()


async def test_unit_without_a_key_the_body_is_counted_as_it_arrives_not_as_declared() -> None:
    keys = ApiKeys({"k1": ["audit:write"]})
    pieces = [piece(b"x" * 1000, more=True), piece(b"x" * 1000)]
    middleware, budget, seen = budgeted(10_000 * COST, keys=keys)
    sent, _ = await call(middleware, pieces, length=3000)  # declares more than it sends
    assert answer(sent)[0] == 200
    assert (seen, budget.held, budget.high_water) == ([2000 * COST], 0, 2000 * COST)
    middleware, budget, seen = budgeted(10_000 * COST, keys=keys)
    sent, _ = await call(middleware, [piece(b"x" * 3000)], length=3000, key=b"k1")
    assert (seen, budget.high_water) == (
        [3000 * COST],
        3000 * COST,
    )  # with a key: reserved before reading


async def test_unit_a_body_no_route_reads_is_not_read_and_closes_the_connection() -> None:
    middleware, budget, seen = budgeted(10_000)
    sent, received = await call(middleware, [piece(b"x" * 3000)], length=3000, path="/nowhere")
    start = sent[0]
    assert (received, seen) == (1, [0])  # the app itself received; the middleware read nothing
    assert (b"connection", b"close") in start["headers"]
    assert budget.high_water == 0


async def test_unit_a_chunked_body_is_counted_as_it_is_read() -> None:
    middleware, budget, seen = budgeted(10_000 * COST)
    pieces = [piece(b"x" * 1000, more=True), piece(b"x" * 1000, more=True), piece(b"x" * 500)]
    sent, _ = await call(middleware, pieces)
    assert answer(sent)[0] == 200
    assert (seen, budget.held, budget.high_water) == ([2500 * COST], 0, 2500 * COST)


async def test_unit_a_chunked_body_passing_the_budget_is_cut_off_with_503() -> None:
    middleware, budget, seen = budgeted(2048 * COST)
    pieces = [piece(b"x" * 1000, more=True) for _ in range(4)]
    sent, received = await call(middleware, pieces)
    status, headers, body = answer(sent)
    assert (status, body["error"]["code"], headers[b"connection"]) == (503, "overloaded", b"close")
    assert (received, seen, budget.held, budget.high_water) == (3, [], 0, 2000 * COST)


async def test_unit_the_hold_is_released_after_a_413_and_a_client_gone() -> None:
    middleware, budget, _ = budgeted(100_000)
    sent, _ = await call(middleware, [piece(b"x" * 3000, more=True)] * 2)
    assert answer(sent)[0] == 413
    # The bytes past the limit: never.
    assert (budget.held, budget.high_water) == (0, 3000 * COST)
    gone = [piece(b"x" * 1000, more=True), {"type": "http.disconnect"}]
    middleware, budget, seen = budgeted(100_000, read_after=True)
    sent, _ = await call(middleware, gone, length=3000)
    assert (sent, seen, budget.held, budget.high_water) == ([], [3000 * COST], 0, 3000 * COST)


async def test_the_bytes_are_released_after_201_202_and_422(service: ServiceFactory) -> None:
    async with service(max_body_bytes=LIMIT, max_in_flight_bytes=COST * LIMIT) as client:
        event = {"user_id": "u", "model": "m", "prompt": "p" * 1000, "response": "r"}
        acked = await client.post("/audit", json=event)
        queued = await client.post("/audit", params={"wait": "false"}, json=event)
        invalid = await client.post("/audit", json={"user_id": "u"})
        published = await client.post("/publish", json={"topic": "test-bytes", "value": "v" * 900})
        await services_of(client).producer.flush(timeout_s=30)
        metrics = (await client.get("/metrics")).text
    assert acked.status_code == 201, acked.text
    assert queued.status_code == 202, queued.text
    assert_contract_error(invalid, 422, "invalid_request")
    assert published.status_code == 201, published.text
    assert metric(metrics, "rg_in_flight_bytes") == 0
    assert 1000 * COST < metric(metrics, "rg_in_flight_bytes_high_water") <= COST * LIMIT


def post_with_length(length: str, body: bytes) -> bytes:
    """A POST /audit whose Content-Length header is `length`, as written."""
    head = (
        "POST /audit HTTP/1.1\r\nHost: rg\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    )
    return head.encode() + body


def test_a_content_length_with_thousands_of_digits_is_no_500(live_service: LiveService) -> None:
    # Leading zeros are valid HTTP (the server's parser takes them); Python's int() refuses a
    # string of more than 4,300 digits.
    five = exchange(live_service.url, post_with_length("0" * 5000 + "5", b"12345"))
    # 10^19 - 1: more digits than the service compares, fewer than overflow the parser (2^64).
    huge = exchange(live_service.url, post_with_length("0" * 5000 + "9" * 19, b"12345"))
    assert five.status == 422, five.body
    assert five.error()["code"] == "invalid_request"
    assert huge.status == 413, huge.body
    assert huge.error()["code"] == "body_too_large"
    assert huge.headers["connection"] == "close"
    assert "Traceback" not in live_service.log()


def test_idle_bodies_without_a_key_hold_no_bytes_an_authenticated_write_needs(
    kafka_bootstrap: str, tmp_path: Path, start_service: Launch
) -> None:
    """64 connections to an unknown path and 64 to /audit without a key, each declaring 1 MiB
    and sending none of it, would hold the whole default budget (64 MiB) if a declared length
    were reserved before authentication: an authenticated POST /audit is still 201."""
    service = start_service(kafka_bootstrap, tmp_path, api_keys='{"k1": ["audit:write"]}')
    service.wait_ready()
    idle: list[socket.socket] = []
    try:
        for path in ("/no-such-path", "/audit"):
            for _ in range(64):
                connection = socket.create_connection(address_of(service.url), timeout=10)
                connection.sendall(
                    f"POST {path} HTTP/1.1\r\nHost: rg\r\nContent-Length: 1048576\r\n\r\n".encode()
                )
                idle.append(connection)
        event = b'{"user_id": "u", "model": "m", "prompt": "p", "response": "r"}'
        written = exchange(
            service.url,
            b"POST /audit HTTP/1.1\r\nHost: rg\r\ncontent-type: application/json\r\n"
            + b"x-api-key: k1\r\ncontent-length: %d\r\n\r\n" % len(event)
            + event,
        )
        assert written.status == 201, written.body
        # The unknown path is answered at once, without its body: 404, and the connection closed.
        unknown = idle[0].recv(65536)
        assert unknown.startswith(b"HTTP/1.1 404 "), unknown
        assert b"connection: close" in unknown.lower()
    finally:
        for connection in idle:
            connection.close()


@pytest.mark.parametrize(
    ("declared", "length"),
    [(None, 0), (b"0", 0), (b"000", 0), (b"00042", 42), (b"42", 42), (b"x", 0)],
)
def test_unit_a_declared_length_of_zeros_is_zero(declared: bytes | None, length: int) -> None:
    # `Content-Length: 0` (a POST without a body) was a 500: the zeros stripped left no digit.
    headers = [] if declared is None else [(b"content-length", declared)]
    assert declared_length({"type": "http", "headers": headers}) == length
