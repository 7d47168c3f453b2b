"""An in-process client of the service (ASGI, lifespan run) on the session broker."""

import json
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from app.integrity.keys import generate
from tests.helpers.app import ServiceFactory, client_for
from tests.helpers.openai_upstream import Upstream
from tests.helpers.proxy import SIDECAR_KEY
from tests.helpers.service import LiveService, running_service


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


@pytest.fixture(scope="module")
def proxy_service(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, scripted_upstream: Upstream
) -> Iterator[LiveService]:
    """The service as a process, its recording proxy in front of `scripted_upstream`
    (fail-closed, authentication on: `SIDECAR_KEY` has audit:write; signing checkpoints, so
    the receipts' proofs are served)."""
    workdir = tmp_path_factory.mktemp("proxy-service")
    _, private_key, _ = generate(workdir / "keys")
    with running_service(
        kafka_bootstrap,
        workdir,
        audit_signing_key_file=str(private_key),
        openai_upstream_url=scripted_upstream.url,
        api_keys=json.dumps({SIDECAR_KEY: ["audit:write"]}),
        proxy_read_timeout_s="3",
    ) as service:
        yield service
