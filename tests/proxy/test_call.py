"""A proxied call's audit event, made directly: any call becomes a valid schema v2 event,
content beyond the record's bounds kept as text."""

import json

from app.kafka import KafkaAuditEvent
from app.proxy.assembly import Answer
from app.proxy.call import Call, event_of


def test_unit_content_beyond_the_bounds_is_recorded_as_text() -> None:
    deep: object = "x"
    for _ in range(12):
        deep = {"a": deep}
    request = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "function": {"name": "f", "arguments": json.dumps(deep)}}
                ],
            },
        ],
    }
    call = Call("chat.completions", request, "u-1", stream=False)
    call.end()
    event = event_of(call, Answer(response_model="m", text="ok"))
    assert event.schema_version == 2
    assert event.input_messages is None
    assert event.prompt is not None
    assert json.loads(event.prompt)["input_messages"][0]["parts"][0]["content"] == "hi"
    assert KafkaAuditEvent.model_validate_json(event.canonical_json()) == event


def test_unit_a_call_that_is_no_json_is_recorded() -> None:
    call = Call("embeddings", {}, "\ud800-user", stream=False)
    call.end("upstream_error")
    event = event_of(call, Answer(status=400, error="bad body"))
    assert event.model == "unknown"
    assert event.user_id == "?-user"
    assert event.metadata["proxy"]["outcome"] == "upstream_error"
    assert event.metadata["proxy"]["error"] == "bad body"
