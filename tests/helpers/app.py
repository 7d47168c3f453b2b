"""The service in process (ASGI, lifespan run), and checks of its answers."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from app.main import create_app
from app.services import Services
from app.settings import Settings

ServiceFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@asynccontextmanager
async def client_for(bootstrap: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app with `settings`; the app is `client.app` (for its state).
    POST /publish may write the suite's `test-*` topics unless `publish_topics` says else
    (unset, the service publishes nowhere)."""
    app = create_app(
        Settings(
            _env_file=None,
            kafka_bootstrap_servers=[bootstrap],
            **{"ready_timeout_s": 1.0, "publish_topics": ["test-*"], **settings},
        )
    )
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def app_of(client: httpx.AsyncClient) -> FastAPI:
    app: FastAPI = client.app  # type: ignore[attr-defined]
    return app


def services_of(client: httpx.AsyncClient) -> Services:
    """The parts of the client's app (its connection, reader, spool, ...)."""
    services: Services = app_of(client).state.services
    return services


async def reader_connected(client: httpx.AsyncClient) -> None:
    """Wait until the GET /messages consumer has its partitions."""
    await asyncio.wait_for(services_of(client).reader.connected.wait(), 30)


def assert_contract_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error body with `status` and `code`; returns `error`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], list)
    assert error["request_id"] == response.headers["x-request-id"]
    return error
