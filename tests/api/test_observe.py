"""One log line per request, request ids, and a contract body for genuine faults."""

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.api.observe import RequestObserver
from app.logs import configure_logging
from app.metrics import ServiceMetrics
from tests.helpers.app import ServiceFactory, app_of, assert_contract_error

SECRET_PROMPT = "my card number is 4111-1111-1111-1111"
EVENT = {"user_id": "u1", "model": "m", "prompt": SECRET_PROMPT, "response": "noted"}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [r.fields for r in caplog.records if r.name == "app.access"]  # type: ignore[attr-defined]


@pytest.fixture
def service_logging(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Logging as `serve` configures it at DEBUG, still captured by caplog."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("aiokafka").level)
    configure_logging("DEBUG", "json")
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        logging.getLogger("aiokafka").setLevel(saved[2])


@pytest.mark.usefixtures("service_logging")
async def test_each_request_logs_one_line_with_route_status_duration_and_event_id(
    service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with service() as client:
        response = await client.post("/audit", json=EVENT)
    receipt = response.json()
    [line] = [fields for fields in access_lines(caplog) if fields["route"] == "/audit"]
    assert line["method"] == "POST"
    assert line["status"] == 201
    assert isinstance(line["duration_ms"], float)
    assert line["event_id"] == receipt["event_id"]
    assert line["request_id"] == response.headers["x-request-id"]
    # Prompt and response text never reach the log, whatever the level.
    for record in caplog.records:
        assert SECRET_PROMPT not in record.getMessage()
        assert SECRET_PROMPT not in str(getattr(record, "fields", ""))


async def test_a_sane_caller_request_id_is_kept_and_an_odd_one_replaced(
    service: ServiceFactory,
) -> None:
    async with service() as client:
        kept = await client.get("/healthz", headers={"x-request-id": "abc-123"})
        replaced = await client.get("/healthz", headers={"x-request-id": "bad id\twith spaces"})
    assert kept.headers["x-request-id"] == "abc-123"
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_an_unexpected_fault_is_a_500_with_the_contract_body_and_logged(
    service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> None:
        raise RuntimeError("a bug")

    async with service() as client:
        app: FastAPI = app_of(client)
        app.add_api_route("/broken", broken)
        transport = client._transport
        transport.raise_app_exceptions = False  # type: ignore[attr-defined]
        response = await client.get("/broken")
    error = response.json()["error"]
    assert response.status_code == 500
    assert error["code"] == "internal_error"
    assert "a bug" not in error["message"]
    assert error["request_id"]
    assert any(r.name == "app.api.errors" and r.exc_info for r in caplog.records)
    assert [f["status"] for f in access_lines(caplog) if f["route"] == "/broken"] == [500]


async def test_unknown_routes_answer_404_with_the_contract_body(service: ServiceFactory) -> None:
    async with service() as client:
        assert_contract_error(await client.get("/nope"), 404, "not_found")


async def test_unit_an_answer_with_an_upstreams_request_id_keeps_it_alone() -> None:
    async def answer(scope: Any, receive: Any, send: Any) -> None:
        passed = [(b"x-request-id", b"req_upstream")] if scope["path"] == "/passed" else []
        await send({"type": "http.response.start", "status": 200, "headers": passed})
        await send({"type": "http.response.body", "body": b""})

    observed = RequestObserver(answer, ServiceMetrics())
    transport = httpx.ASGITransport(app=observed)
    async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
        passed = await client.get("/passed", headers={"x-request-id": "mine-1"})
        own = await client.get("/own", headers={"x-request-id": "mine-2"})
    assert passed.headers.get_list("x-request-id") == ["req_upstream"]
    assert passed.headers["x-rg-request-id"] == "mine-1"
    assert own.headers.get_list("x-request-id") == ["mine-2"]
    assert "x-rg-request-id" not in own.headers
