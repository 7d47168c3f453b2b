"""The proxy's reading of the OpenAI wire format, called directly: streams split into events
whatever the chunking, the completing event held back, answers assembled (the scripted
upstream's real wire format as input)."""

import json
from typing import Any

import pytest

from app.proxy.assembly import ChatChunks, SseRelay, endpoint_of, plain_answer, responses_input
from tests.helpers.openai_upstream import (
    chat_chunks,
    chat_completion,
    numbered,
    response_events,
    sse_events,
)

ASK: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "What is our refund window?"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}
TOOLS = [{"type": "function", "function": {"name": "refund_window", "parameters": {}}}]


def _relayed(relay: SseRelay, wire: bytes, size: int) -> bytes:
    sent = b""
    for start in range(0, len(wire), size):
        sent += relay.feed(wire[start : start + size])
    return sent


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_unit_a_chat_stream_passes_whole_events_and_holds_done(size: int, newline: str) -> None:
    wire = b"".join(sse_events(chat_chunks(ASK), typed=False)).replace(b"\n", newline.encode())
    relay = SseRelay("chat.completions")
    sent = _relayed(relay, wire, size)
    done = f"data: [DONE]{newline}{newline}".encode()
    # Everything but the completion went on, byte for byte; the completion is held.
    assert sent + relay.rest() == wire
    assert relay.rest() == done
    assert relay.completed
    answer = relay.assembler.assembled()
    assert answer.text == "You said: What is our refund window?"
    assert answer.finish_reasons == ["stop"]
    assert (answer.input_tokens, answer.output_tokens) == (8, 7)


def test_unit_streamed_tool_call_arguments_are_joined() -> None:
    chunks = ChatChunks()
    for chunk in chat_chunks({**ASK, "tools": TOOLS}):
        chunks.take(chunk)
    answer = chunks.assembled()
    (message,) = answer.output_messages
    (call,) = message["parts"]
    assert call == {
        "type": "tool_call",
        "id": "call_scripted_1",
        "name": "refund_window",
        "arguments": {"q": "What is our refund window?"},
    }
    assert answer.finish_reasons == ["tool_calls"]
    body = json.dumps(chat_completion({**ASK, "tools": TOOLS})).encode()
    plain = plain_answer("chat.completions", 200, body)
    assert plain.text == answer.text == ""  # a tool call has no text
    assert plain.output_messages == answer.output_messages


def test_unit_a_responses_stream_holds_response_completed() -> None:
    body = {"model": "gpt-4o-mini", "input": "Track it", "stream": True}
    events = list(sse_events(numbered(response_events(body)), typed=True))
    relay = SseRelay("responses")
    sent = _relayed(relay, b"".join(events), 13)
    assert relay.rest() == events[-1]
    assert b"response.completed" in relay.rest()
    assert sent == b"".join(events[:-1])
    answer = relay.assembler.assembled()
    assert answer.text == "You said: Track it"
    assert answer.response_id == "resp_scripted_1"
    assert answer.finish_reasons == ["stop"]


def test_unit_a_cut_stream_is_assembled_from_what_arrived() -> None:
    body = {"model": "gpt-4o-mini", "input": "Track it", "stream": True}
    wire = b"".join(sse_events(numbered(response_events(body)), typed=True))
    relay = SseRelay("responses")
    relay.feed(wire[: wire.index(b"response.output_text.done")])
    answer = relay.assembler.assembled()
    assert answer.text == "You said: Track it"
    assert answer.finish_reasons == []


def test_unit_what_is_recorded_and_the_responses_input() -> None:
    assert endpoint_of("POST", "chat/completions") == "chat.completions"
    assert endpoint_of("POST", "/responses") == "responses"
    assert endpoint_of("GET", "responses") is None
    assert endpoint_of("POST", "responses/resp_1/cancel") is None
    system, messages = responses_input(
        {
            "instructions": "Be kind.",
            "input": [
                {"role": "developer", "content": "Short answers."},
                {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
            ],
        }
    )
    assert [p["content"] for p in system] == ["Be kind.", "Short answers."]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[2]["parts"] == [{"type": "tool_call_response", "id": "c1", "response": "42"}]
