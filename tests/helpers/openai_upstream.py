"""A scripted OpenAI-compatible server on loopback: the upstream behind the recording proxy in tests
and benchmarks.

It speaks the real wire format of the OpenAI API for `POST /v1/chat/completions`,
`POST /v1/responses` and `POST /v1/embeddings` (plain JSON, or Server-Sent Events with
`"stream": true`: `data: {chunk}\\n\\n` lines, usage in the last chunk when
`stream_options.include_usage` is set, then `data: [DONE]`; the Responses API's typed events),
answers `GET /v1/models`, and answers anything else 404 in the API's error shape
(`{"error": {"message", "type", "param", "code"}}`). HTTP/1.1 with keep-alive; streams are chunked.

What it says is deterministic: a chat or Responses answer is `You said: <last user text>`, streamed
one word per chunk; with `tools` in the request it calls the first tool with `{"q": <last user
text>}` instead. Embeddings are 4 floats per input (base64 when `encoding_format` is `base64`, the
Python SDK's default).

Faults are chosen by the request's `model`:
- `scripted-error-<status>`: that status with an error body (429 also sends `retry-after: 0`);
- `scripted-cut`: a stream is cut after its first two chunks (a plain answer after half its body),
  the connection closed without the end of the body; `GET /v1/models/scripted-cut` (a path the
  proxy passes through unrecorded) is cut after half its body the same way;
- `scripted-slow-<seconds>`: waits that long before the status line;
- `scripted-malformed`: an answer that is not HTTP (a header line without a colon), then the
  connection closed;
- `scripted-paced-<ms>`: a stream whose events come that many milliseconds apart, as a model's
  tokens do (otherwise they are written at once, or `--chunk-delay-ms` apart).

Start it in a test (a fixture) with the context manager::

    with openai_upstream() as upstream:
        client = OpenAI(base_url=upstream.url, api_key="sk-test")   # upstream.url ends in /v1
        ...
        upstream.requests   # every request received: method, path, headers, body

or as a process (another language's test, a benchmark)::

    python -m tests.helpers.openai_upstream [--port 0] [--chunk-delay-ms 0]

which prints one line `url=http://127.0.0.1:<port>/v1` once it accepts connections and serves
until SIGTERM or SIGINT.
"""

import argparse
import base64
import json
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "gpt-4o-mini-2024-07-18"
EMBEDDING_MODEL = "text-embedding-3-small"
CREATED = 1_765_000_000


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the upstream received it (headers with lower-case names)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Upstream:
    """A running scripted upstream: its base URL (ending in `/v1`) and what it received."""

    url: str
    requests: list[ReceivedRequest] = field(default_factory=list)
    chunk_delay_s: float = 0.0
    # When an Event: each stream pauses after its first event until it is set (at most 30 s),
    # so a test can see what reached the client while the upstream still holds the rest.
    gate: threading.Event | None = None


def reply_text(body: dict[str, Any]) -> str:
    """What the upstream answers to a chat or Responses request: `You said: <last user text>`."""
    return f"You said: {last_user_text(body)}"


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message of a chat (`messages`) or Responses (`input`) request."""
    items = body.get("messages") if "messages" in body else body.get("input")
    if isinstance(items, str):
        return items
    for message in reversed(items or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(
                str(part.get("text", ""))
                for part in content or []
                if isinstance(part, dict) and "text" in part
            )
    return ""


def error_body(status: int, message: str) -> dict[str, Any]:
    """An error in the OpenAI API's shape."""
    kind = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        404: "invalid_request_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _words(text: str) -> list[str]:
    """`text` in stream pieces, one word (with its leading space) each; joined they are `text`."""
    words = text.split(" ")
    return [words[0]] + [f" {w}" for w in words[1:]]


def _tool(body: dict[str, Any]) -> str | None:
    tools = body.get("tools") or []
    if not tools:
        return None
    first = tools[0]
    # Chat nests the name under `function`; the Responses API keeps it flat.
    return str(first["function"]["name"] if "function" in first else first["name"])


def _usage_counts(body: dict[str, Any], answer: str) -> tuple[int, int]:
    return len(last_user_text(body).split()) + 3, len(answer.split())


def chat_completion(body: dict[str, Any]) -> dict[str, Any]:
    """The plain (non-streamed) answer to a chat completions request."""
    tool = _tool(body)
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if tool is None:
        message["content"] = reply_text(body)
        answer, finish = message["content"], "stop"
    else:
        answer = json.dumps({"q": last_user_text(body)})
        message["tool_calls"] = [
            {
                "id": "call_scripted_1",
                "type": "function",
                "function": {"name": tool, "arguments": answer},
            }
        ]
        finish = "tool_calls"
    prompt, completion = _usage_counts(body, answer)
    return {
        "id": "chatcmpl-scripted-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def chat_chunks(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The `chat.completion.chunk` objects of a streamed chat answer, usage last when asked."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-scripted-1",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    tool = _tool(body)
    if tool is None:
        answer = reply_text(body)
        yield chunk({"role": "assistant", "content": ""})
        for piece in _words(answer):
            yield chunk({"content": piece})
        yield chunk({}, "stop")
    else:
        answer = json.dumps({"q": last_user_text(body)})
        yield chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_scripted_1",
                        "type": "function",
                        "function": {"name": tool, "arguments": ""},
                    }
                ],
            }
        )
        for piece in _words(answer):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        yield chunk({}, "tool_calls")
    if (body.get("stream_options") or {}).get("include_usage"):
        prompt, completion = _usage_counts(body, answer)
        last = chunk({})
        last["choices"] = []
        last["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        yield last


def _response_items(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    tool = _tool(body)
    if tool is None:
        text = reply_text(body)
        item = {
            "type": "message",
            "id": "msg_scripted_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }
        return [item], text
    arguments = json.dumps({"q": last_user_text(body)})
    item = {
        "type": "function_call",
        "id": "fc_scripted_1",
        "call_id": "call_scripted_1",
        "name": tool,
        "arguments": arguments,
        "status": "completed",
    }
    return [item], arguments


def response_object(body: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """The Responses API's `response` object for a request (empty output unless completed)."""
    items, answer = _response_items(body)
    prompt, completion = _usage_counts(body, answer)
    done = status == "completed"
    return {
        "id": "resp_scripted_1",
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "model": MODEL,
        "output": items if done else [],
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }
        if done
        else None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": "auto",
        "tools": body.get("tools") or [],
        "text": {"format": {"type": "text"}},
    }


def response_events(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The typed events of a streamed Responses answer, `response.completed` last."""
    (item,), _ = _response_items(body)
    yield {"type": "response.created", "response": response_object(body, "in_progress")}
    if item["type"] == "message":
        text = item["content"][0]["text"]
        opened = {**item, "status": "in_progress", "content": []}
        yield {"type": "response.output_item.added", "output_index": 0, "item": opened}
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        empty = {"type": "output_text", "text": "", "annotations": []}
        yield {"type": "response.content_part.added", **where, "part": empty}
        for piece in _words(text):
            yield {"type": "response.output_text.delta", **where, "delta": piece}
        yield {"type": "response.output_text.done", **where, "text": text}
        yield {"type": "response.content_part.done", **where, "part": item["content"][0]}
    else:
        opened = {**item, "status": "in_progress", "arguments": ""}
        yield {"type": "response.output_item.added", "output_index": 0, "item": opened}
        for piece in _words(item["arguments"]):
            yield {
                "type": "response.function_call_arguments.delta",
                "item_id": item["id"],
                "output_index": 0,
                "delta": piece,
            }
        yield {
            "type": "response.function_call_arguments.done",
            "item_id": item["id"],
            "output_index": 0,
            "arguments": item["arguments"],
        }
    yield {"type": "response.output_item.done", "output_index": 0, "item": item}
    yield {"type": "response.completed", "response": response_object(body)}


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    """The answer to an embeddings request: 4 floats per input."""
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    data = []
    for index, text in enumerate(texts):
        vector = [float(len(str(text))), 0.5, -0.25, float(index)]
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack("<4f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(str(t).split()) for t in texts)
    return {
        "object": "list",
        "data": data,
        "model": EMBEDDING_MODEL,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def sse_events(payloads: Iterator[dict[str, Any]], *, typed: bool) -> Iterator[bytes]:
    """The wire bytes of each event: `data: {json}` (`event: <type>` first when `typed`, as the
    Responses API sends), `data: [DONE]` after a chat stream."""
    for payload in payloads:
        head = f"event: {payload['type']}\n" if typed else ""
        yield f"{head}data: {json.dumps(payload)}\n\n".encode()
    if not typed:  # the Responses API ends with its `response.completed` event, no [DONE]
        yield b"data: [DONE]\n\n"


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Head and body go out in two writes: without this, Nagle's algorithm holds the
            # body until the client's delayed ACK of the head (40 ms per answer on Linux).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _receive(self) -> bytes:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            upstream.requests.append(ReceivedRequest(self.command, self.path, headers, body))
            return body

        def _json(self, status: int, payload: Any, *, cut: bool = False) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-request-id", "req_scripted")
            if status == 429:
                self.send_header("retry-after", "0")
            self.end_headers()
            if cut:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

        def _stream(self, events: Iterator[bytes], *, cut: bool, delay_s: float = 0.0) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("x-request-id", "req_scripted")
            self.end_headers()
            for sent, event in enumerate(events):
                if cut and sent == 2:
                    self.close_connection = True  # no terminating chunk: the body is cut
                    return
                if (delay_s or upstream.chunk_delay_s) and sent:
                    time.sleep(delay_s or upstream.chunk_delay_s)
                if upstream.gate is not None and sent == 1:
                    upstream.gate.wait(timeout=30)
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        def do_GET(self) -> None:
            self._receive()
            model = {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "system"}
            if self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [model]})
            elif self.path == "/v1/models/scripted-cut":
                self._json(200, model, cut=True)
            else:
                self._json(404, error_body(404, f"Unknown path {self.path}"))

        def do_POST(self) -> None:
            raw = self._receive()
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._json(400, error_body(400, "The body is not valid JSON."))
                return
            model = str(body.get("model", ""))
            if model.startswith("scripted-slow-"):
                time.sleep(float(model.removeprefix("scripted-slow-")))
            if model.startswith("scripted-error-"):
                status = int(model.removeprefix("scripted-error-"))
                self._json(status, error_body(status, f"Scripted failure {status}."))
                return
            if model == "scripted-malformed":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nnot a header line\r\n\r\n")
                self.close_connection = True
                return
            cut = model == "scripted-cut"
            paced_s = (
                float(model.removeprefix("scripted-paced-")) / 1000
                if model.startswith("scripted-paced-")
                else 0.0
            )
            path = self.path.split("?")[0].rstrip("/")
            stream = bool(body.get("stream"))
            if path == "/v1/chat/completions":
                if stream:
                    self._stream(
                        sse_events(chat_chunks(body), typed=False), cut=cut, delay_s=paced_s
                    )
                else:
                    self._json(200, chat_completion(body), cut=cut)
            elif path == "/v1/responses":
                if stream:
                    self._stream(sse_events(numbered(response_events(body)), typed=True), cut=cut)
                else:
                    self._json(200, response_object(body), cut=cut)
            elif path == "/v1/embeddings":
                self._json(200, embeddings(body), cut=cut)
            else:
                self._json(404, error_body(404, f"Unknown path {self.path}"))

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def numbered(events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The Responses API's events with their `sequence_number`."""
    for number, event in enumerate(events):
        yield {**event, "sequence_number": number}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: more connections opened at once (a pool
    # filling up for 32 concurrent calls) had their SYNs dropped and retried a second later.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a timeout, a test's cut) is no error of the upstream's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def openai_upstream(*, port: int = 0, chunk_delay_s: float = 0.0) -> Iterator[Upstream]:
    """Serve the scripted upstream on 127.0.0.1 (a free port unless `port`) for the block."""
    upstream = Upstream(url="", chunk_delay_s=chunk_delay_s)
    server = _Server(("127.0.0.1", port), _handler(upstream))
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield upstream
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, after printing `url=<base url>`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with openai_upstream(port=args.port, chunk_delay_s=args.chunk_delay_ms / 1000) as upstream:
        print(f"url={upstream.url}", flush=True)
        stop.wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
