"""RG_MAX_BODY_BYTES while reading: declared, chunked, and just under the limit; against the real
`serve` process too, so the server's own HTTP parsing is in the loop."""

from collections.abc import AsyncIterator

import httpx

from tests.api.conftest import ServiceFactory, assert_contract_error
from tests.conftest import LiveService

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
