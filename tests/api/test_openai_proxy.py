"""The recording proxy (`/openai/v1/...`) with the official `openai` Python SDK, sync and async,
in front of the scripted upstream (tests/helpers/openai_upstream.py): each call is one record on
the audit topic with its GenAI fields, the receipt headers name it, failures pass through and
are recorded as failed calls, and the app's own API key goes upstream and nowhere else."""

import asyncio
import base64
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from app.privacy.sealing import is_sealed
from tests.helpers.app import ServiceFactory
from tests.helpers.logs import SECRET_MARKER
from tests.helpers.metrics import metric
from tests.helpers.openai_upstream import Upstream
from tests.helpers.polling import eventually
from tests.helpers.proxy import (
    SIDECAR_KEY,
    assert_receipt,
    raw_bytes,
    records_by_event,
    text_of,
)
from tests.helpers.service import LiveService

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "refund_window",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


def _canary() -> str:
    # The app's own upstream key: it must reach the upstream and nothing else.
    return f"sk-canary-{SECRET_MARKER}-{uuid.uuid4().hex}"


def _sync(service: LiveService, key: str) -> OpenAI:
    return OpenAI(
        base_url=f"{service.url}/openai/v1",
        api_key=key,
        default_headers={"X-API-Key": SIDECAR_KEY},
        max_retries=0,
    )


def _async(service: LiveService, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=f"{service.url}/openai/v1",
        api_key=key,
        default_headers={"X-API-Key": SIDECAR_KEY},
        max_retries=0,
    )


def _sync_chat_calls(service: LiveService, key: str) -> dict[str, Any]:
    """A plain and a streamed chat call with the sync SDK; what the app saw of each."""
    with _sync(service, key) as client:
        return _chat_calls(client)


def _chat_calls(client: OpenAI) -> dict[str, Any]:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is our refund window?"},
        ],
        user="user-plain",
        temperature=0.2,
    )
    plain = raw.parse()
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "And for gift cards?"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-RG-User": "user-header"},
    )
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    return {
        "plain": plain,
        "plain_request_ids": raw.headers.get_list("x-request-id"),
        "stream_request_ids": stream.response.headers.get_list("x-request-id"),
        "plain_headers": dict(raw.headers),
        "streamed": "".join(pieces),
        "usage": usage,
        "stream_headers": dict(stream.response.headers),
    }


async def test_sync_sdk_chat_plain_and_streamed_are_one_record_each_with_their_receipt(
    proxy_service: LiveService, kafka_bootstrap: str, scripted_upstream: Upstream
) -> None:
    key = _canary()
    seen = await asyncio.to_thread(_sync_chat_calls, proxy_service, key)
    plain_id = seen["plain_headers"]["x-rg-event-id"]
    stream_id = seen["stream_headers"]["x-rg-event-id"]
    found = await records_by_event(kafka_bootstrap, proxy_service.audit_topic)
    (plain_message,) = found[plain_id]
    (stream_message,) = found[stream_id]

    assert_receipt(seen["plain_headers"], plain_message)
    plain = plain_message.value
    assert plain["schema_version"] == 2
    assert (plain["operation"], plain["provider"]) == ("chat", "openai")
    assert plain["user_id"] == "user-plain"  # the request's `user`
    assert plain["request_model"] == "gpt-4o-mini"
    assert plain["model"] == plain["response_model"] == "gpt-4o-mini-2024-07-18"
    assert plain["response_id"] == seen["plain"].id
    assert plain["finish_reasons"] == ["stop"]
    assert plain["system_instructions"] == [{"type": "text", "content": "Answer briefly."}]
    assert text_of(plain["input_messages"]) == "What is our refund window?"
    assert text_of(plain["output_messages"]) == seen["plain"].choices[0].message.content
    assert plain["response"] == "You said: What is our refund window?"
    assert plain["input_tokens"] == seen["plain"].usage.prompt_tokens
    assert plain["output_tokens"] == seen["plain"].usage.completion_tokens
    assert plain["request_id"] == "req_scripted"
    # The upstream's request id reaches the app alone, as the SDK reads it; the sidecar's own
    # is beside it under its own name.
    assert seen["plain_request_ids"] == seen["stream_request_ids"] == ["req_scripted"]
    assert seen["plain"]._request_id == "req_scripted"
    assert len(seen["plain_headers"]["x-rg-request-id"]) == 32
    proxy = plain["metadata"]["proxy"]
    assert proxy["endpoint"] == "chat.completions"
    assert (proxy["status"], proxy["outcome"], proxy["stream"]) == (200, "ok", False)
    assert proxy["request"]["temperature"] == 0.2
    assert proxy["latency_ms"] >= proxy["time_to_first_byte_ms"] > 0

    streamed = stream_message.value
    assert streamed["user_id"] == "user-header"  # X-RG-User before anything else
    assert streamed["response"] == seen["streamed"] == "You said: And for gift cards?"
    assert text_of(streamed["output_messages"]) == seen["streamed"]
    assert streamed["output_tokens"] == seen["usage"].completion_tokens
    assert streamed["input_tokens"] == seen["usage"].prompt_tokens
    assert streamed["finish_reasons"] == ["stop"]
    stream_proxy = streamed["metadata"]["proxy"]
    assert stream_proxy["stream"] is True
    assert stream_proxy["latency_ms"] >= stream_proxy["time_to_first_token_ms"] > 0
    # The app's key went upstream as it was; the sidecar's key did not.
    sent = scripted_upstream.requests[-1].headers
    assert sent["authorization"] == f"Bearer {key}"
    assert "x-api-key" not in sent
    assert "x-rg-user" not in sent


async def test_stream_passes_events_as_they_come_and_ends_with_the_receipt_and_its_proof(
    proxy_service: LiveService, kafka_bootstrap: str, scripted_upstream: Upstream
) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {_canary()}", "X-API-Key": SIDECAR_KEY}
    gate = scripted_upstream.gate = threading.Event()
    try:
        async with (
            httpx.AsyncClient(base_url=proxy_service.url) as client,
            client.stream(
                "POST", "/openai/v1/chat/completions", json=body, headers=headers
            ) as answer,
        ):
            lines = answer.aiter_lines()
            first = await anext(lines)
            # The first event reached the app while the upstream still held the rest: the
            # proxy adds no buffering.
            assert first.startswith("data: {")
            assert not gate.is_set()
            gate.set()
            rest = [line async for line in lines if line]
            event_id = answer.headers["x-rg-event-id"]
    finally:
        gate.set()
        scripted_upstream.gate = None
    assert rest[-1] == "data: [DONE]"
    comment = rest[-2]
    assert comment.startswith(": rg-receipt ")
    receipt = json.loads(comment.removeprefix(": rg-receipt "))
    (message,) = (await records_by_event(kafka_bootstrap, proxy_service.audit_topic))[event_id]
    receipt_headers = {f"x-rg-{k.replace('_', '-')}": str(v) for k, v in receipt.items()}
    assert_receipt(receipt_headers, message)
    assert message.value["user_id"].startswith("key-")  # the sidecar key's label
    assert SIDECAR_KEY not in message.value["user_id"]

    async def proof_served() -> bool:
        async with httpx.AsyncClient(base_url=proxy_service.url) as client:
            return (await client.get(receipt["proof"])).status_code == 200

    await eventually(proof_served, timeout_s=30)  # once a signed checkpoint covers it
    async with httpx.AsyncClient(base_url=proxy_service.url) as client:
        proof = (await client.get(receipt["proof"])).text
    assert proof.startswith("c2sp.org/tlog-proof@v1\n")


async def test_an_app_that_goes_away_mid_stream_has_what_it_was_sent_recorded(
    proxy_service: LiveService, kafka_bootstrap: str, scripted_upstream: Upstream
) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "left early"}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {_canary()}", "X-API-Key": SIDECAR_KEY}
    gate = scripted_upstream.gate = threading.Event()

    async def recorded() -> bool:
        found = await records_by_event(kafka_bootstrap, proxy_service.audit_topic)
        return event_id in found

    try:
        async with (
            httpx.AsyncClient(base_url=proxy_service.url) as client,
            client.stream(
                "POST", "/openai/v1/chat/completions", json=body, headers=headers
            ) as answer,
        ):
            await anext(answer.aiter_lines())
            event_id = answer.headers["x-rg-event-id"]
        # The app is gone (its connection closed): recorded while the upstream still holds the
        # rest (opened before, the rest could reach the proxy before the app's going away).
        await eventually(recorded, timeout_s=30)
    finally:
        gate.set()
        scripted_upstream.gate = None
    (message,) = (await records_by_event(kafka_bootstrap, proxy_service.audit_topic))[event_id]
    assert message.value["metadata"]["proxy"]["outcome"] == "client_gone"
    # It had been sent the first chunk only (the role, no text yet).
    assert "response" not in message.value
    assert message.value["request_model"] == "gpt-4o-mini"


async def _async_calls(service: LiveService) -> dict[str, Any]:
    async with _async(service, _canary()) as client:
        seen: dict[str, Any] = {}
        raw = await client.responses.with_raw_response.create(
            model="gpt-4o-mini", input="Where is my parcel?", instructions="Be kind."
        )
        seen["responses"] = (raw.headers["x-rg-event-id"], raw.parse())
        stream = await client.responses.create(
            model="gpt-4o-mini", input="Track it, please.", stream=True, safety_identifier="sid-7"
        )
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        seen["responses_stream"] = (stream.response.headers["x-rg-event-id"], "".join(deltas))
        raw_tool = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "refund window for order 7"}],
            tools=TOOLS,
        )
        seen["tool"] = (raw_tool.headers["x-rg-event-id"], raw_tool.parse())
        tool_stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "refund window for order 8"}],
            tools=TOOLS,
            stream=True,
        )
        arguments = ""
        async for chunk in tool_stream:
            for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                arguments += (call.function.arguments or "") if call.function else ""
        seen["tool_stream"] = (tool_stream.response.headers["x-rg-event-id"], arguments)
        raw_embed = await client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=["first text", "second"]
        )
        seen["embeddings"] = (raw_embed.headers["x-rg-event-id"], raw_embed.parse())
    return seen


async def test_async_sdk_responses_tool_calls_and_embeddings_are_recorded(
    proxy_service: LiveService, kafka_bootstrap: str
) -> None:
    seen = await _async_calls(proxy_service)
    found = await records_by_event(kafka_bootstrap, proxy_service.audit_topic)
    records = {name: found[event_id] for name, (event_id, _) in seen.items()}
    assert all(len(r) == 1 for r in records.values()), "each call recorded once"
    value = {name: r[0].value for name, r in records.items()}

    answer = seen["responses"][1]
    plain = value["responses"]
    assert plain["metadata"]["proxy"]["endpoint"] == "responses"
    assert plain["response_id"] == answer.id
    assert plain["response"] == answer.output_text
    assert plain["system_instructions"] == [{"type": "text", "content": "Be kind."}]
    assert text_of(plain["input_messages"]) == "Where is my parcel?"
    assert (plain["input_tokens"], plain["output_tokens"]) == (
        answer.usage.input_tokens,
        answer.usage.output_tokens,
    )
    streamed = value["responses_stream"]
    assert streamed["response"] == seen["responses_stream"][1] == "You said: Track it, please."
    assert text_of(streamed["output_messages"]) == seen["responses_stream"][1]
    assert streamed["user_id"] == "sid-7"  # the request's safety_identifier
    assert streamed["finish_reasons"] == ["stop"]

    for name in ("tool", "tool_stream"):
        record = value[name]
        assert record["finish_reasons"] == ["tool_calls"]
        (said,) = record["output_messages"]
        (call,) = said["parts"]
        assert (call["type"], call["name"]) == ("tool_call", "refund_window")
        assert call["id"] == "call_scripted_1"
        assert record["metadata"]["proxy"]["tools"] == ["refund_window"]
    tool_answer = seen["tool"][1].choices[0].message.tool_calls[0].function.arguments
    assert value["tool"]["output_messages"][0]["parts"][0]["arguments"] == json.loads(tool_answer)
    streamed_args = value["tool_stream"]["output_messages"][0]["parts"][0]["arguments"]
    assert streamed_args == json.loads(seen["tool_stream"][1])

    embedded = value["embeddings"]
    assert embedded["operation"] == "embeddings"
    assert embedded["model"] == "text-embedding-3-small"
    assert [p["content"] for p in embedded["input_messages"][0]["parts"]] == [
        "first text",
        "second",
    ]
    assert embedded["metadata"]["proxy"]["embeddings"] == 2
    assert embedded["input_tokens"] == seen["embeddings"][1].usage.prompt_tokens


async def test_upstream_failures_pass_through_and_are_recorded_as_failed_calls(
    proxy_service: LiveService, kafka_bootstrap: str
) -> None:
    async with _async(proxy_service, _canary()) as client:
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(
                model="scripted-error-429", messages=[{"role": "user", "content": "hi"}]
            )
        assert limited.value.status_code == 429
        assert limited.value.body == {
            "message": "Scripted failure 429.",
            "type": "rate_limit_exceeded",
            "param": None,
            "code": "rate_limit_exceeded",
        }
        limited_id = limited.value.response.headers["x-rg-event-id"]

        stream = await client.chat.completions.create(
            model="scripted-cut",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
        )
        got: list[str] = []

        async def read() -> None:
            async for chunk in stream:
                got.extend(c.delta.content or "" for c in chunk.choices)

        with pytest.raises(openai.APIError, match="cut off"):
            await read()
        cut_id = stream.response.headers["x-rg-event-id"]

        with pytest.raises(openai.InternalServerError) as late:  # RG_PROXY_READ_TIMEOUT_S=3
            await client.chat.completions.create(
                model="scripted-slow-4", messages=[{"role": "user", "content": "hi"}]
            )
        assert late.value.status_code == 504
        models = await client.models.list()  # passed through, not recorded
        assert [m.id for m in models.data] == ["gpt-4o-mini-2024-07-18"]

    found = await records_by_event(kafka_bootstrap, proxy_service.audit_topic)
    (limited_record,) = found[limited_id]
    proxy = limited_record.value["metadata"]["proxy"]
    assert (proxy["status"], proxy["outcome"]) == (429, "upstream_error")
    assert proxy["error"]["code"] == "rate_limit_exceeded"
    assert "output_messages" not in limited_record.value
    (cut_record,) = found[cut_id]
    assert cut_record.value["metadata"]["proxy"]["outcome"] == "cut"
    assert cut_record.value["response"] == "".join(got)  # what arrived before the cut
    timed_out = [
        m.value
        for ms in found.values()
        for m in ms
        if m.value["metadata"]["proxy"]["outcome"] == "timeout"
    ]
    assert [t["request_model"] for t in timed_out] == ["scripted-slow-4"]
    assert timed_out[0]["metadata"]["proxy"]["status"] == 504
    async with httpx.AsyncClient(base_url=proxy_service.url) as plain:
        text = (await plain.get("/metrics")).text
    assert metric(text, 'rg_proxy_calls_total{endpoint="other",outcome="passed"}') >= 1


async def test_a_malformed_upstream_answer_is_a_502_and_recorded_as_unreachable(
    proxy_service: LiveService, kafka_bootstrap: str
) -> None:
    async with _async(proxy_service, _canary()) as client:
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as failed:
                await client.chat.completions.create(
                    model="scripted-malformed",
                    messages=[{"role": "user", "content": "hi"}],
                    stream=stream,
                )
            assert failed.value.status_code == 502
            assert failed.value.body["code"] == "upstream_unreachable"  # type: ignore[index]
            event_id = failed.value.response.headers["x-rg-event-id"]
            found = await records_by_event(kafka_bootstrap, proxy_service.audit_topic)
            (record,) = found[event_id]
            proxy = record.value["metadata"]["proxy"]
            assert (proxy["status"], proxy["outcome"]) == (502, "unreachable")
            assert proxy["detail"] == "RemoteProtocolError"
        # The service goes on proxying.
        said = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "still there"}]
        )
        assert said.choices[0].message.content == "You said: still there"


async def test_a_passed_through_answer_cut_midway_is_cut_for_the_app_in_one_log_line(
    proxy_service: LiveService,
) -> None:
    headers = {"X-API-Key": SIDECAR_KEY, "Authorization": f"Bearer {_canary()}"}
    async with httpx.AsyncClient(base_url=proxy_service.url, headers=headers) as client:
        async with client.stream("GET", "/openai/v1/models/scripted-cut") as answer:
            assert answer.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):  # no complete body: a cut, as upstream
                await answer.aread()
        # The service goes on serving on other connections.
        assert (await client.get("/openai/v1/models")).status_code == 200
    log = proxy_service.log()
    said = [line for line in log.splitlines() if "was cut off midway" in line]
    assert len(said) == 1
    assert "GET /openai/v1/models/scripted-cut" in said[0]
    assert "RemoteProtocolError" in said[0]
    assert "Traceback" not in log
    # The server took the cut for what it is, not for an answer the app forgot to finish.
    server_errors = [line for line in log.splitlines() if '"logger": "uvicorn.error"' in line]
    assert [line for line in server_errors if '"level": "ERROR"' in line] == []


async def test_a_path_and_query_go_upstream_as_the_app_sent_them(
    proxy_service: LiveService, scripted_upstream: Upstream
) -> None:
    headers = {"X-API-Key": SIDECAR_KEY, "Authorization": f"Bearer {_canary()}"}
    async with httpx.AsyncClient(base_url=proxy_service.url, headers=headers) as client:
        answer = await client.get("/openai/v1/models/a%20b?limit=2&after=x%2By&order=")
    assert answer.status_code == 404  # the scripted upstream's, passed on
    assert scripted_upstream.requests[-1].path == "/v1/models/a%20b?limit=2&after=x%2By&order="


async def test_the_sidecar_key_is_required_in_x_api_key(proxy_service: LiveService) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=proxy_service.url) as client:
        # The app's Authorization is the upstream's: it does not count as the sidecar's key.
        upstream_only = await client.post(
            "/openai/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {SIDECAR_KEY}"},
        )
        wrong = await client.post(
            "/openai/v1/chat/completions", json=body, headers={"X-API-Key": "nope"}
        )
    assert upstream_only.status_code == 401
    assert upstream_only.json()["error"]["code"] == "unauthorized"
    assert wrong.status_code == 401


async def test_an_x_rg_user_too_long_to_hold_is_refused_by_name(proxy_service: LiveService) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"X-API-Key": SIDECAR_KEY, "X-RG-User": "u" * 257}
    async with httpx.AsyncClient(base_url=proxy_service.url) as client:
        refused = await client.post("/openai/v1/chat/completions", json=body, headers=headers)
    assert refused.status_code == 422
    assert "X-RG-User" in refused.text


async def test_the_app_key_is_in_no_record_log_or_metric(
    proxy_service: LiveService, kafka_bootstrap: str
) -> None:
    key = _canary()
    seen = await asyncio.to_thread(_sync_chat_calls, proxy_service, key)
    async with httpx.AsyncClient(base_url=proxy_service.url) as client:
        metrics = (await client.get("/metrics")).text
    # The request's log line names its record (and the grep below reads that log).
    assert seen["plain_headers"]["x-rg-event-id"] in proxy_service.log()
    stored = await raw_bytes(kafka_bootstrap, proxy_service.audit_topic)
    assert b"You said: And for gift cards?" in stored  # the grep reads the records
    for secret in (key, SIDECAR_KEY):
        assert secret.encode() not in stored
        assert secret not in proxy_service.log()
        assert secret not in metrics


async def test_redaction_and_erasure_apply_as_for_post_audit(
    service: ServiceFactory,
    kafka_bootstrap: str,
    topic: str,
    scripted_upstream: Upstream,
    tmp_path: Path,
) -> None:
    ask: list[Any] = [{"role": "user", "content": "Mail jane@example.com the refund."}]
    kek = tmp_path / "kek"
    kek.write_bytes(base64.b64encode(os.urandom(32)) + b"\n")
    kek.chmod(0o600)
    ids = []
    for settings in (
        {"redaction": "mask"},
        {"erasure": "on", "erasure_kek_file": kek, "erasure_subject_field": "person"},
    ):
        async with (
            service(openai_upstream_url=scripted_upstream.url, **settings) as http,
            AsyncOpenAI(
                base_url=str(http.base_url.join("/openai/v1")),
                api_key=_canary(),
                # The in-process app's client (ASGI): the SDK's stubs name httpx otherwise.
                http_client=cast(Any, http),
            ) as client,
        ):
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=ask, user="jane"
            )
            # The app gets the upstream's answer as it was; the trail keeps what the policy lets.
            assert "jane@example.com" in (raw.parse().choices[0].message.content or "")
            ids.append(raw.headers["x-rg-event-id"])
    found = await records_by_event(kafka_bootstrap, topic)
    masked, sealed = (found[event_id][0].value for event_id in ids)
    assert text_of(masked["input_messages"]) == "Mail [EMAIL] the refund."
    assert masked["response"] == "You said: Mail [EMAIL] the refund."
    # With erasure on the messages go as text into prompt and response, sealed under the
    # user's key (structured messages have no sealed form).
    assert "input_messages" not in sealed
    assert "output_messages" not in sealed
    assert is_sealed(sealed["prompt"])
    assert is_sealed(sealed["response"])
    assert sealed["user_id"] == "jane"
    assert sealed["metadata"]["person"] == "jane"  # the subject, where erasure looks for it
    assert "jane@example.com" not in json.dumps(sealed)
