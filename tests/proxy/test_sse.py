"""The proxy's stream relay, called directly: streams split into whole events whatever the
chunking and line endings, the completing event held back, what arrived assembled (the scripted
upstream's real wire format as input)."""

import time
from typing import Any

import pytest

from app.proxy.sse import SseRelay
from tests.helpers.openai_upstream import chat_chunks, numbered, response_events, sse_events

ASK: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "What is our refund window?"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


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


@pytest.mark.parametrize("said", ["response.completed", "\\u0072esponse.completed"])
def test_unit_a_responses_completion_without_its_event_name_is_held(said: str) -> None:
    # Only in the data, and there possibly escaped: read before it could go on.
    delta = b'data: {"type":"response.output_text.delta","delta":"hi"}\n\n'
    done = b'data: {"type":"%s","response":{"id":"r1","status":"completed"}}\n\n' % said.encode()
    relay = SseRelay("responses")
    assert relay.feed(delta) == delta
    relay.absorb()
    assert relay.feed(done) == b""
    assert relay.completed
    assert relay.rest() == done
    assert relay.assembler.assembled().text == "hi"


def test_unit_an_event_nested_too_deep_to_parse_is_passed_on_and_not_taken() -> None:
    # An upstream event past the parser's recursion limit goes on to the app as it came, and is
    # left out of the record, as any event that is no JSON object: it must not raise mid-stream.
    deep = b"data: " + b"[" * 100_000 + b"\n\n"
    wire = deep + b"".join(sse_events(chat_chunks(ASK), typed=False))
    relay = SseRelay("chat.completions")
    sent = _relayed(relay, wire, 100_000)
    assert sent + relay.rest() == wire
    assert relay.completed
    assert relay.assembler.assembled().text == "You said: What is our refund window?"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_unit_a_piece_of_many_events_is_split_in_one_pass(newline: str) -> None:
    # A fast upstream's events arrive many to a read; splitting them took time quadratic in the
    # piece's size (each event's end looked for again from the piece's start, the rest copied):
    # ~1.3 ms for a chat stream's 85 events, seconds for these 4,000.
    many = {**ASK, "messages": [{"role": "user", "content": "word " * 4000}]}
    wire = b"".join(sse_events(chat_chunks(many), typed=False)).replace(b"\n", newline.encode())
    relay = SseRelay("chat.completions")
    started = time.perf_counter()
    sent = relay.feed(wire)
    took_s = time.perf_counter() - started
    assert sent + relay.held == wire
    assert took_s < 0.5, f"{took_s:.2f} s for {wire.count(b'data:')} events"
