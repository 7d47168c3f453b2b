"""GET /ui, its assets and GET /ui/status, and the filters GET /messages gained for the page.

The page's behaviour in a browser is tests/api/test_ui_browser.py. Here: broker-free checks of
what the service answers (the app built, its lifespan not run: nothing here needs Kafka) and
one test of the new filters over real records; the sampling of records/s is tests/test_rates.py."""

import asyncio
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from app.api.ui import ASSETS, CONTENT_SECURITY_POLICY
from app.embedded import free_port
from app.main import create_app, openapi_document
from app.settings import Settings
from tests.helpers.app import (
    BROKER_AWAY,
    ServiceFactory,
    assert_contract_error,
    client_for,
    reader_connected,
)
from tests.helpers.browser import chromium_path
from tests.helpers.polling import eventually

PAGE_FILES = {"/ui": "text/html", "/ui/ui.js": "text/javascript", "/ui/ui.css": "text/css"}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The app without its lifespan: routes that need no Kafka answer as they would."""
    app = create_app(Settings(_env_file=None, audit_topic="audit", api_keys={}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
        yield client


@pytest.mark.parametrize(("path", "media_type"), PAGE_FILES.items())
async def test_the_page_and_its_assets_are_served_with_a_strict_policy(
    client: httpx.AsyncClient, path: str, media_type: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert "default-src 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text


async def test_the_page_needs_no_key_even_with_keys_on() -> None:
    app = create_app(Settings(_env_file=None, api_keys={"rg-test-secret-ui": ["audit:write"]}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rg") as client:
        for path in [*PAGE_FILES, "/ui/status"]:
            assert (await client.get(path)).status_code == 200, path
        # ... while the records it shows do.
        assert_contract_error(await client.get("/messages"), 401, "unauthorized")


class _Markup(HTMLParser):
    """The page's elements that could run or style anything inline."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.scripts: list[str] = []
        self.inline_handlers: list[str] = []
        self.style_attributes = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script":
            if named.get("src"):
                self.scripts.append(named["src"] or "")
            else:
                self.inline_scripts += 1
        if tag == "style" or "style" in named:
            self.style_attributes += 1
        self.inline_handlers += [name for name in named if name.startswith("on")]
        for name in ("src", "href"):
            if (value := named.get(name)) and re.match(r"[a-z]+:|//", value):
                self.external.append(value)


async def test_the_page_has_no_inline_script_and_fetches_nothing_from_elsewhere(
    client: httpx.AsyncClient,
) -> None:
    markup = _Markup()
    markup.feed((await client.get("/ui")).text)
    assert markup.inline_scripts == 0
    assert markup.inline_handlers == []
    assert markup.style_attributes == 0
    assert markup.external == []
    assert markup.scripts == ["/ui/ui.js"]
    assert set(ASSETS) == {"ui.js", "ui.css"}


async def test_the_script_never_writes_markup_and_keeps_the_key_out_of_urls(
    client: httpx.AsyncClient,
) -> None:
    text = (await client.get("/ui/ui.js")).text
    code = re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE)  # the comments name them
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code, sink
    # EventSource cannot send a header: the key would have to go in the URL.
    assert "EventSource" not in code
    assert "Authorization: `Bearer ${key}`" in code
    assert "sessionStorage" in code
    assert re.findall(r"https?://[^\s\"'`]*", code) == ["http://www.w3.org/2000/svg"]


async def test_ui_status_gives_the_header_strips_figures(client: httpx.AsyncClient) -> None:
    status = (await client.get("/ui/status")).json()
    assert status["spool"] == {"enabled": False, "depth": 0, "bytes": 0, "oldest_age_s": 0.0}
    assert status["in_flight"]["records"] == 0
    assert status["in_flight"]["max_records"] > 0
    assert status["rate"]["interval_s"] == 5.0
    assert status["rate"]["records_per_s"] == []
    assert re.fullmatch(r"[0-9a-f]{32}", status["chain"]["writer"])
    assert status["chain"]["seq"] == -1
    assert status["topics"] == ["audit"]
    assert set(status["messages"]) == {"following"}


def test_the_page_is_out_of_the_openapi_document_and_its_status_in_it() -> None:
    paths = openapi_document()["paths"]
    assert "/ui" not in paths
    assert "/ui/ui.js" not in paths
    assert "/ui/status" in paths
    parameters = {p["name"] for p in paths["/messages"]["get"]["parameters"]}
    assert {"user", "model", "text", "until", "partition", "offset"} <= parameters
    stream = {p["name"] for p in paths["/messages/stream"]["get"]["parameters"]}
    assert parameters - {"limit"} == stream


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("until=yesterday", "query.until"),
        ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "query.until"),
        ("partition=-1", "query.partition"),
        ("offset=x", "query.offset"),
        ("user=", "query.user"),
        ("model=", "query.model"),
        ("text=" + "x" * 257, "query.text"),
        ("topic=nope", "query.topic"),
    ],
)
@pytest.mark.parametrize("path", ["/messages", "/messages/stream"])
async def test_unknown_or_bad_filter_values_are_422_naming_the_field(
    client: httpx.AsyncClient, path: str, query: str, field: str
) -> None:
    error = assert_contract_error(await client.get(f"{path}?{query}"), 422, "invalid_request")
    assert [detail["field"] for detail in error["details"]] == [field]
    assert field in error["message"]


async def test_the_new_filters_over_real_records(service: ServiceFactory) -> None:
    async with service() as client:
        await reader_connected(client)
        events = [
            {"user_id": "ann", "model": "m1", "prompt": "Tell me about Kafka", "response": "a"},
            {"user_id": "bob", "model": "m2", "prompt": "hi", "response": "KAFKA is a log"},
            {"user_id": "ann", "model": "m2", "prompt": "bye", "response": "b"},
        ]
        receipts = []
        for event in events:
            response = await client.post("/audit", json=event)
            assert response.status_code == 201, response.text
            receipts.append(response.json())

        async def users(query: str) -> list[str]:
            page = (await client.get(f"/messages?{query}")).json()
            return [m["value"]["user_id"] for m in page["messages"]]

        async def all_kept() -> bool:
            return len(await users("limit=10")) == 3

        await eventually(all_kept, timeout_s=15)
        assert await users("user=ann") == ["ann", "ann"]
        assert await users("model=m2") == ["ann", "bob"]
        assert await users("text=kafka") == ["bob", "ann"]
        assert await users("user=ann&model=m1") == ["ann"]
        first = receipts[0]
        one = (
            await client.get(
                f"/messages?topic={first['topic']}&partition={first['partition']}"
                f"&offset={first['offset']}&limit=1"
            )
        ).json()["messages"]
        assert [m["headers"]["rg-digest"] for m in one] == [first["digest"]]
        until = one[0]["timestamp_utc"]
        assert await users(f"until={until}") == ["ann"]


def test_unit_a_missing_chromium_fails_the_browser_tests_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    with pytest.raises(pytest.fail.Exception, match=r"chromium not found on PATH.*make chromium"):
        chromium_path()


async def test_ui_status_shows_what_the_spool_holds_while_kafka_is_away(tmp_path: Path) -> None:
    # No broker on that port: the event is spooled (202), and the strip says so.
    async with client_for(
        f"127.0.0.1:{free_port()}", spool_dir=tmp_path, spool_after_s=0.2, **BROKER_AWAY
    ) as client:
        answer = await client.post(
            "/audit", json={"user_id": "u", "model": "m", "prompt": "p", "response": "r"}
        )
        assert answer.json()["status"] == "spooled"
        await asyncio.sleep(0.05)
        status = (await client.get("/ui/status")).json()
        ready = await client.get("/readyz")
    assert status["spool"]["enabled"] is True
    assert status["spool"]["depth"] == 1
    assert status["spool"]["bytes"] > 0
    assert status["spool"]["oldest_age_s"] > 0
    assert status["chain"]["seq"] == 0
    # What the strip shows as "not following": GET /messages cannot see new records.
    assert status["messages"] == {"following": False}
    # What the strip shows as "not ready, and why".
    assert_contract_error(ready, 503, "broker_unavailable")
