"""The recording proxy with its broker frozen (SIGSTOP), driven by the official `openai` SDK:
fail-closed, the app's stream never completes and a plain call is a 503, and once the broker is
back a retry is recorded once; fail-open, the answers arrive at once and their records land
once the broker is back, each once."""

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from app.embedded import EmbeddedKafka
from tests.helpers.logs import SECRET_MARKER
from tests.helpers.openai_upstream import Upstream
from tests.helpers.polling import eventually
from tests.helpers.proxy import records_by_event
from tests.helpers.service import Launch, LiveService

ASK: list[Any] = [{"role": "user", "content": "What is our refund window?"}]
ANSWER = "You said: What is our refund window?"


def _client(service: LiveService) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=f"{service.url}/openai/v1",
        api_key=f"sk-canary-{SECRET_MARKER}-{uuid.uuid4().hex}",
        max_retries=0,
    )


def _serve(
    launch: Launch, broker: EmbeddedKafka, upstream: Upstream, workdir: Path, mode: str
) -> LiveService:
    service = launch(
        broker.bootstrap_servers,
        workdir,
        openai_upstream_url=upstream.url,
        proxy_mode=mode,
        produce_timeout_s="2",
    )
    service.wait_ready()
    return service


async def _streamed(client: AsyncOpenAI, into: list[str]) -> str:
    """A streamed chat call; its text is appended to `into` as it arrives. Its event id."""
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    async for chunk in stream:
        into.extend(c.delta.content or "" for c in chunk.choices)
    return stream.response.headers["x-rg-event-id"]


async def _ready(service: LiveService) -> bool:
    async with httpx.AsyncClient(base_url=service.url) as client:
        return (await client.get("/readyz")).status_code == 200


async def test_fail_closed_a_frozen_broker_withholds_the_completion_and_a_retry_records_once(
    own_broker: EmbeddedKafka, scripted_upstream: Upstream, start_service: Launch, tmp_path: Path
) -> None:
    service = _serve(start_service, own_broker, scripted_upstream, tmp_path, "fail-closed")
    async with _client(service) as client:
        await _fail_closed(service, client, own_broker)


async def _fail_closed(
    service: LiveService, client: AsyncOpenAI, own_broker: EmbeddedKafka
) -> None:
    warm = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ASK)
    assert warm.headers["x-rg-status"] == "acked"
    assert own_broker.pid is not None
    os.kill(own_broker.pid, signal.SIGSTOP)
    try:
        got: list[str] = []
        with pytest.raises(openai.APIError, match="audit trail did not take") as withheld:
            await _streamed(client, got)
        with pytest.raises(openai.APIStatusError) as refused:
            await client.chat.completions.create(model="gpt-4o-mini", messages=ASK)
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
    # The text passed through as it came; the completion waited for a record that never came.
    assert "".join(got) == ANSWER
    assert withheld.value.body["code"] == "kafka_timeout"  # type: ignore[index]
    assert refused.value.status_code == 503
    assert refused.value.response.headers["retry-after"]
    assert refused.value.body["type"] == "service_unavailable"  # type: ignore[index]

    await eventually(lambda: _ready(service), timeout_s=60)
    again: list[str] = []
    retried = await _streamed(client, again)
    assert "".join(again) == ANSWER
    found = await records_by_event(own_broker.bootstrap_servers, service.audit_topic)
    assert len(found[retried]) == 1
    assert len(found[warm.headers["x-rg-event-id"]]) == 1
    # Nothing twice: the attempts the broker froze may land late (they reached the upstream),
    # each once, beside the retry's own record.
    assert all(len(records) == 1 for records in found.values()), found
    assert len(found) <= 4


async def test_fail_open_answers_at_once_and_the_records_land_once_the_broker_is_back(
    own_broker: EmbeddedKafka, scripted_upstream: Upstream, start_service: Launch, tmp_path: Path
) -> None:
    service = _serve(start_service, own_broker, scripted_upstream, tmp_path, "fail-open")
    async with _client(service) as client:
        await _fail_open(service, client, own_broker)


async def _fail_open(service: LiveService, client: AsyncOpenAI, own_broker: EmbeddedKafka) -> None:
    assert own_broker.pid is not None
    os.kill(own_broker.pid, signal.SIGSTOP)
    try:
        plain = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ASK
        )
        got: list[str] = []
        streamed = await _streamed(client, got)  # ends with [DONE]: no error
    finally:
        os.kill(own_broker.pid, signal.SIGCONT)
    assert plain.parse().choices[0].message.content == ANSWER
    assert plain.headers["x-rg-status"] == "queued"
    assert "x-rg-offset" not in plain.headers
    assert "".join(got) == ANSWER
    wanted = {plain.headers["x-rg-event-id"], streamed}

    async def landed() -> bool:
        found = await records_by_event(own_broker.bootstrap_servers, service.audit_topic)
        return wanted <= set(found)

    await eventually(landed, timeout_s=60)
    found = await records_by_event(own_broker.bootstrap_servers, service.audit_topic)
    assert {event_id: len(found[event_id]) for event_id in wanted} == dict.fromkeys(wanted, 1)
    assert found[streamed][0].value["response"] == ANSWER
