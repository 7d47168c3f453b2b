"""An in-process client of the service (ASGI, lifespan run) on the session broker."""

from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from tests.helpers.app import ServiceFactory, client_for


@pytest.fixture
def service(kafka_bootstrap: str, topic: str) -> ServiceFactory:
    """`async with service(**settings) as client`: the audit topic is the test's own."""

    def make(**settings: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return client_for(kafka_bootstrap, **{"audit_topic": topic, **settings})

    return make
