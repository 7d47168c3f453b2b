"""The proxy's reading of the OpenAI wire format, called directly: requests and answers
assembled (the scripted upstream's real wire format as input)."""

import json
from typing import Any

from app.proxy.assembly import (
    ChatChunks,
    endpoint_of,
    parse_json,
    plain_answer,
    responses_input,
)
from tests.helpers.openai_upstream import chat_chunks, chat_completion

ASK: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "What is our refund window?"}],
    "stream": True,
}
TOOLS = [{"type": "function", "function": {"name": "refund_window", "parameters": {}}}]


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


def test_unit_a_request_nested_too_deep_to_parse_is_read_as_no_object() -> None:
    # The proxy parses the request once it has gone upstream (to record it): a body nested past
    # the parser's recursion limit must not raise there, or the call would be neither answered
    # nor recorded.
    assert parse_json(b"[" * 100_000) == {}
    assert parse_json(b'{"model": "m"}') == {"model": "m"}


def test_unit_tool_arguments_nested_too_deep_to_parse_are_kept_as_text() -> None:
    # Arguments are text the model wrote: past the parser's recursion limit they stay text (as
    # any other text that is no JSON), rather than raise while the answer is recorded.
    body = chat_completion({**ASK, "tools": TOOLS})
    deep = "[" * 100_000
    body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = deep
    answer = plain_answer("chat.completions", 200, json.dumps(body).encode())
    (message,) = answer.output_messages
    assert message["parts"][0]["arguments"] == deep
