"""The FastAPI application: `create_app(settings)` and the lifespan that owns long-lived clients."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.api import health
from app.api.errors import install_error_handlers
from app.connection import ProducerConnection
from app.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; `settings` defaults to the ones read from the environment."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connection = ProducerConnection(settings)
        await connection.start()
        # With the broker up, be ready from the first request; without it, serve anyway
        # (/readyz says 503) and keep connecting in the background.
        await connection.wait_connected(settings.ready_timeout_s)
        app.state.connection = connection
        try:
            yield
        finally:
            await connection.close()

    app = FastAPI(
        title="ractogateway-kafka",
        version=__version__,
        summary="Audit-trail sidecar: AI prompts and responses written durably to Apache Kafka.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(health.router)
    return app
