"""An in-process client of the service (ASGI, lifespan run) on the session broker."""

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from tests.helpers.app import ServiceFactory, client_for


@pytest.fixture
def via(request: pytest.FixtureRequest) -> str:
    """Which handler of POST /audit and POST /publish answers the `service` fixture's clients
    (`tests.helpers.app.VIAS`): "lean" unless the test is marked `BOTH_HANDLERS`, which runs it
    once per handler."""
    chosen: str = getattr(request, "param", "lean")
    return chosen


@pytest.fixture
def service(kafka_bootstrap: str, topic: str, via: str) -> ServiceFactory:
    """`async with service(**settings) as client`: the audit topic is the test's own."""

    def make(**settings: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return client_for(kafka_bootstrap, via=via, **{"audit_topic": topic, **settings})

    return make
