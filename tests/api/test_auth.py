"""API keys and scopes on every protected route (the session broker behind them)."""

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest

from app.services import StartupError
from tests.helpers.app import ServiceFactory, assert_contract_error, client_for
from tests.helpers.logs import SECRET_MARKER
from tests.helpers.service import Launch

KEYS = {
    "rg-test-secret-writer": ["audit:write"],
    "rg-test-secret-reader": ["messages:read"],
    "rg-test-secret-all": ["audit:write", "publish:write", "messages:read"],
}
EVENT = {"user_id": "u", "model": "m", "prompt": "p", "response": "r"}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def calls(client: httpx.AsyncClient, topic: str, headers: dict[str, str]) -> dict[str, int]:
    """The status of one call to each protected route with `headers`."""
    return {
        "audit": (await client.post("/audit", json=EVENT, headers=headers)).status_code,
        "batch": (
            await client.post("/audit/batch", json={"events": [EVENT]}, headers=headers)
        ).status_code,
        "publish": (
            await client.post("/publish", json={"topic": topic + "-x", "value": 1}, headers=headers)
        ).status_code,
        "messages": (await client.get("/messages", headers=headers)).status_code,
    }


async def test_each_key_reaches_exactly_its_scopes(service: ServiceFactory, topic: str) -> None:
    async with service(api_keys=KEYS) as client:
        writer = await calls(client, topic, bearer("rg-test-secret-writer"))
        reader = await calls(client, topic, {"x-api-key": "rg-test-secret-reader"})
        everything = await calls(client, topic, bearer("rg-test-secret-all"))
    assert writer == {"audit": 201, "batch": 200, "publish": 403, "messages": 403}
    assert reader == {"audit": 403, "batch": 403, "publish": 403, "messages": 200}
    assert everything == {"audit": 201, "batch": 200, "publish": 201, "messages": 200}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("rg-test-secret-unknown"),
        {"x-api-key": "rg-test-secret-unknown"},
        {"authorization": "Basic cmctdGVzdDpzZWNyZXQ="},
        {"authorization": "Bearer"},
        {"x-api-key": ""},
    ],
    ids=["none", "unknown-bearer", "unknown-header", "basic", "empty-bearer", "empty-header"],
)
async def test_no_or_unknown_key_is_401(
    service: ServiceFactory, topic: str, headers: dict[str, str]
) -> None:
    async with service(api_keys=KEYS) as client:
        response = await client.post("/audit", json=EVENT, headers=headers)
        statuses = await calls(client, topic, headers)
    error = assert_contract_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "rg-test-secret" not in error["message"]
    assert set(statuses.values()) == {401}


async def test_two_different_keys_are_401_even_when_one_holds_the_scope(
    service: ServiceFactory,
) -> None:
    # Which of two credentials counts must never depend on header order or a proxy's habits.
    wrong = {**bearer("rg-test-secret-all"), "x-api-key": "rg-test-secret-wrong"}
    two_good = {**bearer("rg-test-secret-all"), "x-api-key": "rg-test-secret-writer"}
    same = {**bearer("rg-test-secret-writer"), "x-api-key": "rg-test-secret-writer"}
    async with service(api_keys=KEYS) as client:
        answers = [await client.post("/audit", json=EVENT, headers=h) for h in (wrong, two_good)]
        accepted = await client.post("/audit", json=EVENT, headers=same)
    for response in answers:
        error = assert_contract_error(response, 401, "unauthorized")
        assert "one API key" in error["message"]
    assert accepted.status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        [("x-api-key", "rg-test-secret-all"), ("x-api-key", "rg-test-secret-wrong")],
        [("x-api-key", "rg-test-secret-wrong"), ("x-api-key", "rg-test-secret-all")],
        [("authorization", "Bearer rg-test-secret-all"), ("authorization", "Bearer wrong")],
        [("authorization", "Bearer rg-test-secret-all"), ("authorization", "Basic eDp5")],
    ],
    ids=["x-api-key", "x-api-key-reversed", "two-bearers", "bearer-and-basic"],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/vnd.x+json"])
async def test_a_header_sent_twice_with_different_values_is_401(
    service: ServiceFactory, headers: list[tuple[str, str]], content_type: str
) -> None:
    # The first X-API-Key won: an appending proxy's key lost to the client's, in either order.
    body = json.dumps(EVENT).encode()
    good = next(header for header in headers if header[1].endswith("rg-test-secret-all"))
    async with service(api_keys=KEYS) as client:
        response = await client.post(
            "/audit", content=body, headers=[("content-type", content_type), *headers]
        )
        same = await client.post(
            "/audit",
            content=body,
            headers=[("content-type", content_type), good, good],
        )
    error = assert_contract_error(response, 401, "unauthorized")
    assert "one API key" in error["message"]
    assert same.status_code == 201  # the same value twice is one key


async def test_a_missing_scope_is_403_naming_it(service: ServiceFactory) -> None:
    async with service(api_keys=KEYS) as client:
        response = await client.get("/messages", headers=bearer("rg-test-secret-writer"))
    error = assert_contract_error(response, 403, "forbidden")
    assert "messages:read" in error["message"]


async def test_probes_and_metrics_need_no_key(service: ServiceFactory) -> None:
    async with service(api_keys=KEYS) as client:
        statuses = [(await client.get(path)).status_code for path in ("/healthz", "/readyz")]
        metrics = await client.get("/metrics")
    assert statuses == [200, 200]
    assert metrics.status_code == 200


async def test_auth_off_on_a_non_loopback_address_is_refused_unless_allowed_then_warned(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens here (the app runs in process): the settings alone decide.
    with pytest.raises(StartupError, match="RG_ALLOW_UNAUTHENTICATED=true"):
        async with client_for(kafka_bootstrap, host="0.0.0.0"):
            pass
    with caplog.at_level(logging.WARNING, logger="app.main"):
        async with client_for(kafka_bootstrap, host="0.0.0.0", allow_unauthenticated=True):
            pass
        async with client_for(kafka_bootstrap, host="127.0.0.1"):
            pass
        async with client_for(kafka_bootstrap, host="0.0.0.0", api_keys=KEYS):
            pass
    warnings = [r for r in caplog.records if "authentication is off" in r.getMessage()]
    assert len(warnings) == 1
    assert "0.0.0.0" in warnings[0].getMessage()


async def test_keys_never_reach_the_served_process_log(
    kafka_bootstrap: str, tmp_path: Path, start_service: Launch
) -> None:
    service = await asyncio.to_thread(
        start_service,
        kafka_bootstrap,
        tmp_path,
        api_keys=json.dumps(KEYS),
        log_level="DEBUG",
    )
    try:
        await asyncio.to_thread(service.wait_ready)
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            for key in (*KEYS, "rg-test-secret-unknown"):
                await client.post("/audit", json=EVENT, headers=bearer(key))
                await client.get("/messages", headers={"x-api-key": key})
    finally:
        assert await asyncio.to_thread(service.stop) == 0
    log = service.log()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line.get("route") == "/audit" for line in lines)  # the requests were logged
    assert SECRET_MARKER not in log
