"""The recording proxy with its broker frozen (SIGSTOP), driven by the official `openai` SDK, a
fail-closed and a fail-open service on the same broker: fail-closed, the app's stream never
completes and a plain call is a 503, and once the broker is back a retry is recorded once;
fail-open, the answers arrive at once and their records land once the broker is back, each
once."""

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
from tests.helpers.processes import freeze
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


async def test_a_frozen_broker_holds_fail_closed_answers_and_lets_fail_open_ones_through(
    own_broker: EmbeddedKafka, scripted_upstream: Upstream, start_service: Launch, tmp_path: Path
) -> None:
    closed, opened = (
        start_service(
            own_broker.bootstrap_servers,
            tmp_path / mode,
            openai_upstream_url=scripted_upstream.url,
            proxy_mode=mode,
            produce_timeout_s="2",
        )
        for mode in ("fail-closed", "fail-open")
    )
    closed.wait_ready()
    opened.wait_ready()
    async with _client(closed) as strict, _client(opened) as lenient:
        warm = await strict.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ASK
        )
        assert warm.headers["x-rg-status"] == "acked"
        assert own_broker.pid is not None
        freeze(own_broker.pid)
        try:
            got: list[str] = []
            with pytest.raises(openai.APIError, match="audit trail did not take") as withheld:
                await _streamed(strict, got)
            with pytest.raises(openai.APIStatusError) as refused:
                await strict.chat.completions.create(model="gpt-4o-mini", messages=ASK)
            plain = await lenient.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=ASK
            )
            let_through: list[str] = []
            streamed = await _streamed(lenient, let_through)  # ends with [DONE]: no error
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)

        # Fail-closed: the text passed through as it came; the completion waited for a record
        # that did not come in time.
        assert "".join(got) == ANSWER
        assert withheld.value.body["code"] == "kafka_timeout"  # type: ignore[index]
        assert refused.value.status_code == 503
        assert refused.value.response.headers["retry-after"]
        assert refused.value.body["type"] == "service_unavailable"  # type: ignore[index]
        # Fail-open: the answers arrived while the broker was frozen.
        assert plain.parse().choices[0].message.content == ANSWER
        assert plain.headers["x-rg-status"] == "queued"
        assert "x-rg-offset" not in plain.headers
        assert "".join(let_through) == ANSWER

        await eventually(lambda: _ready(closed), timeout_s=60)
        again: list[str] = []
        retried = await _streamed(strict, again)
        assert "".join(again) == ANSWER

    found = await records_by_event(own_broker.bootstrap_servers, closed.audit_topic)
    assert len(found[retried]) == 1
    assert len(found[warm.headers["x-rg-event-id"]]) == 1
    # Nothing twice: the attempts the broker froze may land late (they reached the upstream),
    # each once, beside the retry's own record.
    assert all(len(records) == 1 for records in found.values()), found
    assert len(found) <= 4

    wanted = {plain.headers["x-rg-event-id"], streamed}

    async def landed() -> bool:
        found = await records_by_event(own_broker.bootstrap_servers, opened.audit_topic)
        return wanted <= set(found)

    await eventually(landed, timeout_s=60)
    found = await records_by_event(own_broker.bootstrap_servers, opened.audit_topic)
    assert {event_id: len(found[event_id]) for event_id in wanted} == dict.fromkeys(wanted, 1)
    assert found[streamed][0].value["response"] == ANSWER
