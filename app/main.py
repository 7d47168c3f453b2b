"""The FastAPI application: `create_app(settings)` builds the service's parts (`app.services`,
on `app.state.services`), its lifespan starts and stops them; the middleware and the routers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from app import __version__
from app.api import (
    audit,
    erasure,
    health,
    integrity,
    messages,
    metrics,
    openai_proxy,
    otlp,
    proofs,
    publish,
    records,
    ui,
)
from app.api.body_limit import BodyLimit
from app.api.errors import install_error_handlers
from app.api.lean import LeanApp, LeanDispatch, lean_paths
from app.api.observe import RequestObserver
from app.api.openapi import without_null_parameters
from app.services import build_services
from app.settings import Settings, get_settings

DESCRIPTION = """\
Apps send every prompt/response they handle to this service; it writes each one durably to
Apache Kafka (acks=all, idempotent producer) and answers with a receipt: topic, partition,
offset and the SHA-256 digest of the stored record.

Every error answers with `{"error": {"code", "message", "details", "request_id"}}`. Besides
the statuses each operation lists, any request may get, answered by the HTTP layer with the
connection then closed: 400 `bad_request` (not valid HTTP); 408 `request_timeout` (head and
body not received within RG_REQUEST_READ_TIMEOUT_S of the first byte); 431 `headers_too_large`
(more than RG_MAX_HEADERS header lines or RG_MAX_HEADER_BYTES bytes of URL and headers); 503
`too_many_connections` with `Retry-After` (RG_MAX_CONNECTIONS connections open already).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; `settings` defaults to the ones read from the environment. Its parts
    are built at once (`app.state.services`) and started by the lifespan."""
    services = build_services(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = LeanApp(
        title="ractogateway-kafka",
        version=__version__,
        summary="Audit-trail sidecar: AI prompts and responses written durably to Apache Kafka.",
        description=DESCRIPTION,
        lifespan=lifespan,
        # No Swagger UI or ReDoc pages: both load their scripts from a CDN, onto the origin
        # of /ui (whose page keeps an API key), and show nothing offline. The document stays
        # at /openapi.json, for any viewer run elsewhere.
        docs_url=None,
        redoc_url=None,
        # `/audit/` is a 404, not a 307 whose Location is built from the request's Host.
        redirect_slashes=False,
    )
    app.state.services = services
    routers = (
        audit.router,
        erasure.router,
        integrity.router,
        proofs.router,
        records.router,
        publish.router,
        messages.router,
        health.router,
        metrics.router,
        ui.router,
        otlp.router,
        openai_proxy.router,
    )
    # Innermost: the busiest routes served without routing, after the body is read and inside
    # the observer (logged and counted like the rest).
    app.add_middleware(LeanDispatch, routers=routers)
    # Added before the observer, so it runs inside it: a 413 is logged and counted like the rest.
    app.add_middleware(
        BodyLimit,
        max_bytes=services.settings.max_body_bytes,
        budget=services.in_flight,
        routes=[route for router in routers for route in router.routes],
        keys=services.api_keys,
    )
    app.add_middleware(RequestObserver, metrics=services.metrics)
    # The lean routes' requests enter at the observer (app.api.lean.LeanApp).
    app.serve_lean(lean_paths(routers), entry=RequestObserver)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # FastAPI caches the document it makes; made plain once, the cached one stays so.
        if app.openapi_schema is None:
            app.openapi_schema = without_null_parameters(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document (it does not depend on the settings' values)."""
    document: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()
    return document
