"""The recording proxy (`/openai/v1/...`) over HTTP, driven by clients this project did not write:
the official OpenAI JavaScript SDK (npm `openai`) for a plain and a streamed chat completion, and
the programs of docs/proxy-sdks.md (Python SDK, JavaScript SDK, Go SDK, curl) as the page shows
them. One service process against the session broker and the scripted upstream of
tests/helpers/openai_upstream.py (the `scripted_upstream` fixture) serves the module; each call
is found on the audit topic by its receipt, and what the client received is compared with what
was recorded.

These live in tests/api/ because what they check is the route's behaviour over HTTP as real
clients see it (the Python SDK's own tests of the same route are tests/api/test_openai_proxy*.py).
"""

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.kafka import KafkaMessage
from tests.helpers import ROOT
from tests.helpers.kafka import records_of
from tests.helpers.logs import SECRET_MARKER
from tests.helpers.openai_sdks import GO_SOURCE, JS_SOURCE, build_go_program, run_node
from tests.helpers.openai_upstream import Upstream
from tests.helpers.service import LiveService, running_service

PAGE = ROOT / "docs" / "proxy-sdks.md"
# The address the page's programs use; the tests put the test service's in its place.
DOCUMENTED = "127.0.0.1:8080"
APP_KEY = f"sk-{SECRET_MARKER}-app-key"
SIDECAR_KEY = f"{SECRET_MARKER}-sidecar-key"
RECEIPT_HEADERS = ("writer", "seq", "digest", "topic", "partition", "offset", "event-id")


@pytest.fixture(scope="module")
def proxy(
    kafka_bootstrap: str, scripted_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveService]:
    with running_service(
        kafka_bootstrap,
        tmp_path_factory.mktemp("sdk-proxy"),
        openai_upstream_url=scripted_upstream.url,
        api_keys=json.dumps({SIDECAR_KEY: ["audit:write"]}),
    ) as service:
        yield service


def client_env(proxy: LiveService, **more: str) -> dict[str, str]:
    """The environment an app has: its OpenAI key, its sidecar key; no RG_* of the service."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RG_")}
    return {**env, "OPENAI_API_KEY": APP_KEY, "RG_API_KEY": SIDECAR_KEY, **more}


def page_block(info: str) -> str:
    """The one fenced block of docs/proxy-sdks.md whose info string is `info`."""
    (block,) = re.findall(rf"^```{info}\n(.*?)^```$", PAGE.read_text("utf-8"), re.M | re.S)
    return str(block)


async def recorded(proxy: LiveService, bootstrap: str) -> dict[str, KafkaMessage]:
    """The audit topic's records by event id."""
    messages = await records_of(bootstrap, proxy.audit_topic)
    return {message.value["event_id"]: message for message in messages}


def output_text(record: dict[str, Any]) -> str:
    """The text of a recorded answer: the text parts of its output messages, joined."""
    return "".join(
        part["content"]
        for message in record["output_messages"]
        for part in message["parts"]
        if part["type"] == "text"
    )


def assert_receipt_is_the_record(receipt: dict[str, str], message: KafkaMessage) -> None:
    """The receipt (header names without `x-rg-`) names `message` and its chain headers."""
    assert receipt["writer"] == message.header("rg-writer")
    assert receipt["seq"] == message.header("rg-seq")
    assert receipt["digest"] == message.header("rg-digest")
    assert (receipt["topic"], receipt["partition"], receipt["offset"]) == (
        message.topic,
        str(message.partition),
        str(message.offset),
    )
    assert receipt["event-id"] == message.value["event_id"]


def from_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: headers[f"x-rg-{name}"] for name in RECEIPT_HEADERS}


def from_sse_comment(receipt: dict[str, Any]) -> dict[str, str]:
    # The stream's receipt is JSON (numbers as numbers); compared as the headers' text.
    return {name: str(receipt[name.replace("-", "_")]) for name in RECEIPT_HEADERS}


def test_unit_the_go_program_of_the_page_is_the_one_built_against_the_pinned_module() -> None:
    assert page_block("go") == (GO_SOURCE / "main.go").read_text("utf-8")


async def test_the_javascript_sdk_gets_what_was_recorded_plain_and_streamed(
    proxy: LiveService, kafka_bootstrap: str, scripted_upstream: Upstream, tmp_path: Path
) -> None:
    env = client_env(proxy, PROXY_BASE_URL=f"{proxy.url}/openai/v1", RG_USER="js-user")
    program = (JS_SOURCE / "calls.mjs").read_text("utf-8")
    ran = await asyncio.to_thread(run_node, program, tmp_path, env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    got = json.loads(ran.stdout)
    records = await recorded(proxy, kafka_bootstrap)

    plain = records[got["plain"]["headers"]["x-rg-event-id"]]
    assert got["plain"]["text"] == output_text(plain.value) == "You said: Say hello in one word."
    assert_receipt_is_the_record(from_headers(got["plain"]["headers"]), plain)
    assert plain.value["user_id"] == "js-user"
    assert plain.value["response_id"] == got["plain"]["id"]

    streamed = records[got["stream"]["receipt"]["event_id"]]
    assert got["stream"]["text"] == output_text(streamed.value) == "You said: Count to three."
    assert_receipt_is_the_record(from_sse_comment(got["stream"]["receipt"]), streamed)
    # The stream's head left before the record: it names the event the receipt is for.
    assert got["stream"]["headers"]["x-rg-event-id"] == streamed.value["event_id"]
    assert streamed.value["finish_reasons"] == [got["stream"]["finish_reason"]] == ["stop"]
    usage = got["stream"]["usage"]
    assert (streamed.value["input_tokens"], streamed.value["output_tokens"]) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    # The app's key went upstream and nowhere else.
    sent = {r.headers["authorization"] for r in scripted_upstream.requests[-2:]}
    assert sent == {f"Bearer {APP_KEY}"}
    assert not [m.offset for m in records.values() if APP_KEY in json.dumps(m.value)]


def run_page_program(info: str, proxy: LiveService, workdir: Path) -> list[str]:
    """Run the page's block `info` against the test service; its output lines."""
    program = page_block(info).replace(DOCUMENTED, proxy.url.removeprefix("http://"))
    env = client_env(proxy)
    if info == "js":
        ran = run_node(program, workdir, env)
    elif info == "go":
        binary = build_go_program(program, workdir)
        ran = _run([str(binary)], workdir, env)
    elif info == "python":
        (workdir / "program.py").write_text(program, encoding="utf-8")
        ran = _run([sys.executable, "program.py"], workdir, env)
    else:
        ran = _run(["bash", "-c", program], workdir, env)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    return ran.stdout.splitlines()


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("info", "said"),
    [("python", "Python"), ("js", "JavaScript"), ("go", "Go")],
)
async def test_each_sdk_program_of_the_page_gets_its_answer_recorded(
    info: str, said: str, proxy: LiveService, kafka_bootstrap: str, tmp_path: Path
) -> None:
    text, receipt = await asyncio.to_thread(run_page_program, info, proxy, tmp_path)
    assert text == f"You said: Hello from {said}"
    _, writer, seq = receipt.split(" ")
    records = await recorded(proxy, kafka_bootstrap)
    (record,) = [
        m for m in records.values() if (m.header("rg-writer"), m.header("rg-seq")) == (writer, seq)
    ]
    assert output_text(record.value) == text
    assert record.value["user_id"] == "alice"


async def test_the_curl_command_of_the_page_gets_its_answer_and_receipt(
    proxy: LiveService, kafka_bootstrap: str, tmp_path: Path
) -> None:
    lines = await asyncio.to_thread(run_page_program, "sh", proxy, tmp_path)
    blank = lines.index("")
    headers = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:blank])
    }
    body = json.loads("\n".join(lines[blank + 1 :]))
    record = (await recorded(proxy, kafka_bootstrap))[headers["x-rg-event-id"]]
    assert body["choices"][0]["message"]["content"] == output_text(record.value)
    assert output_text(record.value) == "You said: Hello from curl"
    assert_receipt_is_the_record(from_headers(headers), record)
    assert record.value["user_id"] == "alice"
