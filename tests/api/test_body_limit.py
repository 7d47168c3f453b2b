"""RG_MAX_BODY_BYTES while reading: declared, chunked, and just under the limit; against the real
`serve` process too, so the server's own HTTP parsing is in the loop. And RG_MAX_IN_FLIGHT_BYTES:
the body's bytes held from before it is read until the request is answered."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.types import Message, Receive, Scope, Send

from app.api.body_limit import BodyLimit
from app.ingest.backpressure import ByteBudget
from tests.helpers.app import ServiceFactory, assert_contract_error, services_of
from tests.helpers.metrics import metric
from tests.helpers.service import LiveService

LIMIT = 4096


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


def budgeted(max_in_flight_bytes: int, *, read_after: bool = False) -> Budgeted:
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

    return BodyLimit(app, max_bytes=LIMIT, budget=budget), budget, seen


async def call(
    middleware: BodyLimit, messages: list[Message], *, length: int | None = None
) -> tuple[list[Message], int]:
    """One POST through `middleware`: the messages it sent, and how many it received."""
    headers = [(b"content-length", str(length).encode())] if length is not None else []
    scope = {"type": "http", "method": "POST", "path": "/audit", "headers": headers}
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
    middleware, budget, seen = budgeted(10_000)
    sent, _ = await call(middleware, [piece(b"x" * 3000)], length=3000)
    assert answer(sent)[0] == 200
    assert (seen, budget.held, budget.high_water) == ([3000], 0, 3000)


async def test_unit_a_declared_length_beyond_the_budget_is_503_before_reading() -> None:
    middleware, budget, seen = budgeted(10_000)
    others = budget.reserve(8000)
    sent, received = await call(middleware, [piece(b"x" * 3000)], length=3000)
    status, headers, body = answer(sent)
    assert (status, body["error"]["code"], headers[b"retry-after"]) == (503, "overloaded", b"1")
    assert headers[b"connection"] == b"close"  # what the server read ahead goes with it
    assert "RG_MAX_IN_FLIGHT_BYTES" in body["error"]["message"]
    assert (received, seen, budget.held, budget.refusals.bytes) == (0, [], 8000, 1)
    others.release()


async def test_unit_a_chunked_body_is_counted_as_it_is_read() -> None:
    middleware, budget, seen = budgeted(10_000)
    pieces = [piece(b"x" * 1000, more=True), piece(b"x" * 1000, more=True), piece(b"x" * 500)]
    sent, _ = await call(middleware, pieces)
    assert answer(sent)[0] == 200
    assert (seen, budget.held, budget.high_water) == ([2500], 0, 2500)


async def test_unit_a_chunked_body_passing_the_budget_is_cut_off_with_503() -> None:
    middleware, budget, seen = budgeted(2048)
    pieces = [piece(b"x" * 1000, more=True) for _ in range(4)]
    sent, received = await call(middleware, pieces)
    status, headers, body = answer(sent)
    assert (status, body["error"]["code"], headers[b"connection"]) == (503, "overloaded", b"close")
    assert (received, seen, budget.held, budget.high_water) == (3, [], 0, 2000)


async def test_unit_the_hold_is_released_after_a_413_and_a_client_gone() -> None:
    middleware, budget, _ = budgeted(100_000)
    sent, _ = await call(middleware, [piece(b"x" * 3000, more=True)] * 2)
    assert answer(sent)[0] == 413
    assert (budget.held, budget.high_water) == (0, 3000)  # the bytes past the limit: never
    gone = [piece(b"x" * 1000, more=True), {"type": "http.disconnect"}]
    middleware, budget, seen = budgeted(100_000, read_after=True)
    sent, _ = await call(middleware, gone, length=3000)
    assert (sent, seen, budget.held, budget.high_water) == ([], [3000], 0, 3000)


async def test_the_bytes_are_released_after_201_202_and_422(service: ServiceFactory) -> None:
    async with service(max_body_bytes=LIMIT, max_in_flight_bytes=LIMIT) as client:
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
    assert 1000 < metric(metrics, "rg_in_flight_bytes_high_water") <= LIMIT
