"""The /ui page in a real browser against the real service and broker: headless Chromium
(Debian's package, tests/helpers/browser.py) driven by Playwright, one browser for the module.

Records are posted through POST /audit with httpx, as an app would; the page shows them from
GET /messages and its live tail from GET /messages/stream. Screenshots go to each test's
tmp_path and to test-artifacts/ui/ (git-ignored), and their paths are printed (`pytest -s`).
"""

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.embedded import free_port
from tests.helpers.browser import chromium_path, screenshot_paths
from tests.helpers.logs import SECRET_MARKER
from tests.helpers.processes import run_cli
from tests.helpers.service import Launch, LiveService, running_service

TIMEOUT_MS = 15_000
READ_KEY = f"{SECRET_MARKER}-ui-read"
WRITE_KEY = f"{SECRET_MARKER}-ui-write"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for every test of the module."""
    executable = chromium_path()
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        print(f"\nchromium {browser.version} up in {time.monotonic() - started:.2f}s")
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def ui_service(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    """The service (keys off) as a process against the session broker."""
    with running_service(kafka_bootstrap, tmp_path_factory.mktemp("ui-service")) as service:
        yield service


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage); the page's script errors fail the test."""
    context = browser.new_context(viewport={"width": 1366, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], f"errors in the page's script: {errors}"


def post(service: LiveService, key: str | None = None, **fields: str) -> dict[str, Any]:
    """POST /audit one event (`user_id`, `prompt`, ... default to something); the receipt."""
    event = {"user_id": "user", "model": "model-ui", "prompt": "p", "response": "r", **fields}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(f"{service.url}/audit", json=event, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    receipt: dict[str, Any] = response.json()
    return receipt


def open_ui(page: Page, service: LiveService, query: str = "") -> None:
    """Open /ui and wait until its live tail follows."""
    page.goto(f"{service.url}/ui{query}")
    expect(page.locator("#live")).to_have_text("live")


def user_rows(page: Page, user: str) -> Any:
    return page.locator("#rows tr", has=page.locator("td.user", has_text=user))


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    for path in screenshot_paths(tmp_path, name):
        page.screenshot(path=path, full_page=True)
    print(f"screenshot {name}: {screenshot_paths(tmp_path, name)[1]}")


def test_a_record_appears_live_and_pausing_counts_the_new_ones(
    page: Page, ui_service: LiveService, tmp_path: Path
) -> None:
    open_ui(page, ui_service)
    user = f"live-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    post(ui_service, user_id=user, prompt="first, shown live")
    expect(user_rows(page, user)).to_have_count(1)
    print(f"posted -> shown live in {time.monotonic() - started:.2f}s")

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#live")).to_have_text("paused")
    post(ui_service, user_id=user, prompt="second, while paused")
    post(ui_service, user_id=user, prompt="third, while paused")
    expect(page.locator("#new-count")).to_have_text("2 new")
    expect(user_rows(page, user)).to_have_count(1)
    shoot(page, tmp_path, "paused-2-new")

    page.get_by_role("button", name="Resume").click()
    expect(user_rows(page, user)).to_have_count(3)
    expect(page.locator("#new-count")).to_be_hidden()
    # Newest first.
    prompts = user_rows(page, user).locator("td.prompt").all_inner_texts()
    assert prompts == ["third, while paused", "second, while paused", "first, shown live"]
    # The header strip: ready, and the figures of /ui/status.
    expect(page.locator("#ready")).to_have_text("ready")
    expect(page.locator("#following")).to_have_text("following")
    expect(page.locator("#spool")).to_have_text("off")
    expect(page.locator("#in-flight")).to_contain_text("records")
    shoot(page, tmp_path, "live")


def test_a_user_filter_is_in_the_url_and_narrows_the_table(
    page: Page, ui_service: LiveService, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    for user in ("ann", "bob", "ann"):
        post(ui_service, user_id=f"{user}-{tag}", prompt=f"from {user}")
    open_ui(page, ui_service)
    expect(page.locator("#rows td.user", has_text=tag)).to_have_count(3)

    page.get_by_label("User").fill(f"ann-{tag}")
    page.get_by_label("User").press("Enter")
    page.wait_for_url(f"**/ui?user=ann-{tag}")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#rows tr")).to_have_count(2)
    assert set(page.locator("#rows td.user").all_inner_texts()) == {f"ann-{tag}"}
    # The live tail is filtered too: bob's new record does not show, ann's does.
    post(ui_service, user_id=f"bob-{tag}", prompt="not shown")
    post(ui_service, user_id=f"ann-{tag}", prompt="shown")
    expect(page.locator("#rows tr")).to_have_count(3)
    assert set(page.locator("#rows td.user").all_inner_texts()) == {f"ann-{tag}"}
    shoot(page, tmp_path, "filtered-by-user")

    # The URL is the view: opened anew, it shows the same.
    page.goto(page.url)
    expect(page.get_by_label("User")).to_have_value(f"ann-{tag}")
    expect(page.locator("#rows tr")).to_have_count(3)


def test_the_detail_view_shows_the_receipts_digest_and_a_curl_line(
    page: Page, ui_service: LiveService, tmp_path: Path
) -> None:
    user = f"detail-{uuid.uuid4().hex[:8]}"
    receipt = post(ui_service, user_id=user, prompt="What is in the detail view?")
    open_ui(page, ui_service, f"?user={user}")
    expect(page.locator("#rows tr")).to_have_count(1)

    # Keyboard only: the row's button, Enter, and Escape to close.
    page.locator("#rows button.open").focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#detail")
    expect(dialog).to_be_visible()
    expect(page.locator("#d-digest")).to_have_text(receipt["digest"])
    expect(page.locator("#d-position")).to_contain_text(
        f"partition {receipt['partition']}, offset {receipt['offset']}"
    )
    expect(page.locator("#d-chain")).to_contain_text("seq ")
    expect(page.locator("#d-redaction")).to_contain_text("none recorded")
    expect(page.locator("#d-value")).to_contain_text('"prompt": "What is in the detail view?"')
    curl = page.locator("#d-curl").inner_text()
    assert f"partition={receipt['partition']}&offset={receipt['offset']}" in curl
    shoot(page, tmp_path, "detail")

    # The curl line fetches that very record.
    url = curl.split("'")[1]
    fetched = httpx.get(url, timeout=10).json()["messages"]
    assert [m["headers"]["rg-digest"] for m in fetched] == [receipt["digest"]]

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_html_in_a_prompt_is_shown_as_text_and_runs_nothing(
    page: Page, ui_service: LiveService, tmp_path: Path
) -> None:
    user = f"html-{uuid.uuid4().hex[:8]}"
    prompt = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
    response = '<b onmouseover="window.pwned = 3">bold?</b>'
    open_ui(page, ui_service, f"?user={user}")
    post(ui_service, user_id=user, prompt=prompt, response=response)  # through the live tail
    row = user_rows(page, user)
    expect(row).to_have_count(1)
    assert row.locator("td.prompt").inner_text() == prompt
    assert row.locator("td.response").inner_text() == response
    row.locator("button.open").click()
    expect(page.locator("#d-value")).to_contain_text("<script>window.pwned = 1</script>")
    assert page.locator("#rows img, #rows script, #rows b, #detail img, #detail b").count() == 0
    shoot(page, tmp_path, "html-as-text-detail")
    page.keyboard.press("Escape")
    shoot(page, tmp_path, "html-as-text")
    page.locator("#rows td.response").hover()
    assert page.evaluate("window.pwned") is None


def test_an_unknown_filter_value_shows_the_apis_error(page: Page, ui_service: LiveService) -> None:
    page.goto(f"{ui_service.url}/ui?topic=no-such-topic")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("422 invalid_request")
    expect(error).to_contain_text("query.topic: 'no-such-topic' is not kept")
    page.goto(f"{ui_service.url}/ui?since=last-tuesday")
    expect(error).to_contain_text("query.since")
    expect(page.locator("#rows tr")).to_have_count(0)


def test_with_keys_on_the_page_asks_for_one_and_never_puts_it_in_a_url(
    browser: Browser, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Also signed and redacting: the strip shows the latest checkpoint, the table which
    records it covers, the detail view the redaction policy (in dark mode, for its
    screenshots)."""
    keys = f'{{"{READ_KEY}": ["messages:read"], "{WRITE_KEY}": ["audit:write"]}}'
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    made = run_cli(["keys", "generate", "--out", str(tmp_path / "keys")], cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    (signing_key,) = (tmp_path / "keys").glob("*.key.pem")
    with running_service(
        kafka_bootstrap,
        tmp_path / "keyed",
        api_keys=keys,
        audit_signing_key_file=str(signing_key),
        audit_checkpoint_s="0.2",
        redaction="mask",
    ) as service:
        context = browser.new_context(color_scheme="dark", viewport={"width": 1366, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        try:
            page.goto(f"{service.url}/ui")
            error = page.locator("#error")
            expect(error).to_contain_text("401 unauthorized: an API key is required")
            expect(page.get_by_role("textbox", name="API key")).to_be_focused()
            shoot(page, tmp_path, "key-asked-dark")

            page.get_by_role("textbox", name="API key").fill("rg-test-secret-wrong")
            page.get_by_role("button", name="Use key").click()
            expect(error).to_contain_text("401 unauthorized: unknown API key")

            page.get_by_role("textbox", name="API key").fill(READ_KEY)
            page.get_by_role("button", name="Use key").click()
            expect(page.locator("#live")).to_have_text("live")
            expect(error).to_be_hidden()
            user = f"keyed-{uuid.uuid4().hex[:8]}"
            post(service, WRITE_KEY, user_id=user, prompt="seen with the key")
            expect(user_rows(page, user)).to_have_count(1)
            # Shown live before the checkpoint was signed; the strip's next look at
            # GET /audit/checkpoint (every 5 s) marks it covered.
            expect(user_rows(page, user).locator("td.integrity")).to_contain_text(
                "#0 · checkpointed"
            )
            # Kept for the tab: a reload needs no new key. By now a signed checkpoint
            # covers the record (every 0.2 s here), which GET /messages says.
            page.reload()
            expect(user_rows(page, user)).to_have_count(1)
            expect(user_rows(page, user).locator("td.integrity")).to_contain_text(
                "#0 · checkpointed"
            )
            expect(page.locator("#checkpoint")).to_contain_text("seq 0 of ")
            shoot(page, tmp_path, "with-key-dark")
            user_rows(page, user).locator("button.open").click()
            expect(page.locator("#d-redaction")).to_contain_text("mask;v=")
            expect(page.locator("#d-checkpointed")).to_have_text("covered by a signed checkpoint")
            assert "$RG_API_KEY" in page.locator("#d-curl").inner_text()
            shoot(page, tmp_path, "detail-dark")
            assert page.evaluate("sessionStorage.getItem('rg-api-key')") == READ_KEY
        finally:
            context.close()
    assert not [url for url in urls if SECRET_MARKER in url]


# No broker needed, but a browser: run with the module's other tests (`make test` sets Chromium
# up), not in the broker-free run.
@pytest.mark.broker
def test_the_strip_says_not_following_while_kafka_is_away(
    page: Page, tmp_path: Path, start_service: Launch
) -> None:
    # Nothing listens on that port: the service serves, its GET /messages reader cannot follow.
    service = start_service(f"127.0.0.1:{free_port()}", tmp_path / "run")
    service.wait_live()
    page.goto(f"{service.url}/ui")
    expect(page.locator("#following")).to_have_text("not following")
    expect(page.locator("#following-why")).to_contain_text("reconnecting to Kafka")
    expect(page.locator("#ready")).to_have_text("not ready")
    shoot(page, tmp_path, "not-following")


def test_the_whole_trail_mode_searches_get_audit_records(
    page: Page, ui_service: LiveService, tmp_path: Path
) -> None:
    user = f"trail-{uuid.uuid4().hex[:8]}"
    for n in range(3):
        post(ui_service, user_id=user, prompt=f"kept on the trail {n}")
    open_ui(page, ui_service, f"?user={user}")
    page.get_by_role("checkbox", name="Search the whole trail").check()
    page.wait_for_url(f"**/ui?user={user}&trail=1")
    expect(page.locator("#live")).to_contain_text("3 records, all found")
    expect(user_rows(page, user)).to_have_count(3)
    expect(page.locator("#pause")).to_be_hidden()
    prompts = user_rows(page, user).locator("td.prompt").all_inner_texts()
    assert prompts == [f"kept on the trail {n}" for n in (2, 1, 0)]  # newest first
    shoot(page, tmp_path, "whole-trail")
    # Back to the live tail.
    page.get_by_role("checkbox", name="Search the whole trail").uncheck()
    expect(page.locator("#live")).to_have_text("live")
