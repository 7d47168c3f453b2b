"""The service in process (ASGI, lifespan run), and checks of its answers."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from app.api.lean import lean_handler_of
from app.main import create_app
from app.services import Services
from app.settings import Settings

ServiceFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]

# The handlers of a lean route (app/api/lean.py): "lean" serves the common case, "declared"
# (the FastAPI route) the rest. `?via=declared`, a query the lean handlers do not read, makes
# them decline, so the declared route answers.
VIAS = ("lean", "declared")
# A test run once per handler of POST /audit and POST /publish: the `via` fixture
# (tests/api/conftest.py), which the `service` fixture's clients follow.
BOTH_HANDLERS = pytest.mark.parametrize("via", VIAS, indirect=True)

_LIFESPAN_S = 60.0

# For an app with no broker at its address: its start waits for the first connection as long as
# RG_READY_TIMEOUT_S (1 s by `client_for`'s default), which a test of the broker's absence need
# not spend.
BROKER_AWAY: dict[str, Any] = {"ready_timeout_s": 0.2}


@asynccontextmanager
async def client_for(
    bootstrap: str, *, via: str = "lean", **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app with `settings`; the app is `client.app` (for its state).
    POST /publish may write the suite's `test-*` topics unless `publish_topics` says else
    (unset, the service publishes nowhere). `via="declared"`: the client's requests to the
    lean routes are answered by their declared routes (see `VIAS`)."""
    app = create_app(
        Settings(
            _env_file=None,
            kafka_bootstrap_servers=[bootstrap],
            **{"ready_timeout_s": 1.0, "publish_topics": ["test-*"], **settings},
        )
    )
    # The app's own bounds decide how long starting and stopping may take (a shutdown may use
    # RG_SHUTDOWN_TIMEOUT_S, 30 s); the helper's default of 5 s was stricter, and a loaded machine
    # crossed it while stopping two replicas with keys stores.
    async with LifespanManager(
        app, startup_timeout=_LIFESPAN_S, shutdown_timeout=_LIFESPAN_S
    ) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        hooks = {"request": [_to_declared(app)]} if via == "declared" else {}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://rg", event_hooks=hooks
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def _to_declared(app: FastAPI) -> Callable[[httpx.Request], Awaitable[None]]:
    lean = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if lean_handler_of(route.original_route) is not None
        for method in route.methods or ()
    }
    assert lean, "no lean route found"

    async def add_via(request: httpx.Request) -> None:
        if (request.method, request.url.path) in lean:
            request.url = request.url.copy_merge_params({"via": "declared"})

    return add_via


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
