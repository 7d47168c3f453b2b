"""Every error renders as the contract's body through one handler (unit: a bare FastAPI app,
no broker; and the service's app, its lifespan not run)."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from app.api.errors import error_bytes, install_error_handlers
from app.errors import ServiceError, TooManyConnectionsError, problem_for
from app.kafka import KafkaConnectionError, KafkaRecordTooLargeError
from app.main import create_app
from app.settings import Settings
from tests.helpers.errors import ANSWERS


class Item(BaseModel):
    name: str


def app_raising() -> FastAPI:
    """An app whose routes raise each error of the tree, a library error, and a bug."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/tree/{name}")
    async def tree(name: str) -> None:
        kind = next(kind for kind in ANSWERS if kind.__name__ == name)
        raise kind(f"{name} happened", details=[{"field": "f", "message": "m"}])

    @app.get("/library/down")
    async def down() -> None:
        raise KafkaConnectionError("no broker")

    @app.get("/library/big")
    async def big() -> None:
        raise KafkaRecordTooLargeError("too big")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    @app.post("/items")
    async def items(item: Item) -> Item:
        return item

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_raising(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
        yield client


def contract_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    # A browser must not read an error (which may quote the request) as anything but JSON.
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert list(error) == ["code", "message", "details", "request_id"]
    assert error["code"] == code
    assert error["message"]
    return error


@pytest.mark.parametrize("kind", list(ANSWERS), ids=lambda kind: kind.__name__)
async def test_unit_each_error_of_the_tree_answers_with_its_status_and_retry_after(
    client: httpx.AsyncClient, kind: type[ServiceError]
) -> None:
    status, code, retry_after_s = ANSWERS[kind]
    response = await client.get(f"/tree/{kind.__name__}")
    error = contract_error(response, status, code)
    assert error["message"] == f"{kind.__name__} happened"
    assert error["details"] == [{"field": "f", "message": "m"}]
    assert response.headers.get("retry-after") == (
        str(retry_after_s) if retry_after_s is not None else None
    )
    assert ("www-authenticate" in response.headers) == (status == 401)


async def test_unit_library_errors_answer_through_the_same_handler(
    client: httpx.AsyncClient,
) -> None:
    down = await client.get("/library/down")
    assert (
        contract_error(down, 503, "broker_unavailable")["message"] == "Kafka unreachable: no broker"
    )
    assert int(down.headers["retry-after"]) > 0
    big = await client.get("/library/big")
    contract_error(big, 413, "record_too_large")
    assert "retry-after" not in big.headers


async def test_unit_the_frameworks_errors_and_a_bug_answer_with_the_contract_body(
    client: httpx.AsyncClient,
) -> None:
    contract_error(await client.get("/nope"), 404, "not_found")
    contract_error(await client.delete("/bug"), 405, "method_not_allowed")
    invalid = contract_error(await client.post("/items", json={}), 422, "invalid_request")
    assert invalid["details"] == [{"field": "body.name", "message": "Field required"}]
    unreadable = await client.post(
        "/items", content=b"{", headers={"content-type": "application/json"}
    )
    assert contract_error(unreadable, 422, "invalid_request")["details"][0]["field"] == "body"
    bug = contract_error(await client.get("/bug"), 500, "internal_error")
    assert "a bug" not in bug["message"]


async def test_unit_the_protocols_answers_carry_the_same_body(client: httpx.AsyncClient) -> None:
    # Answers written before routing (head bounds, connection bound) build the same body.
    refusal = TooManyConnectionsError("the service has 2 connections open")
    written = json.loads(error_bytes(problem_for(refusal), "abc"))
    assert written == {
        "error": {
            "code": "too_many_connections",
            "message": "the service has 2 connections open",
            "details": [],
            "request_id": "abc",
        }
    }
    routed = (await client.get("/tree/TooManyConnectionsError")).json()
    assert list(routed["error"]) == list(written["error"])


async def test_a_trailing_slash_is_404_not_a_redirect_built_from_the_host_header() -> None:
    # Starlette answered POST /audit/ with 307 and a Location made of the request's Host.
    app = create_app(Settings(_env_file=None, audit_topic="audit", api_keys={}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
        answers = [
            await client.post("/audit/", json={}, headers={"host": "elsewhere.example"}),
            await client.get("/messages/", headers={"host": "elsewhere.example"}),
        ]
    for response in answers:
        contract_error(response, 404, "not_found")
        assert "location" not in response.headers
