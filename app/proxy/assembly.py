"""What one proxied call said, assembled into the fields of one audit event (schema version 2).

The request's messages (chat completions' `messages`, the Responses API's `instructions` and
`input`, embeddings' `input`) become `system_instructions` and `input_messages` in the
OpenTelemetry GenAI shape (`role` and `parts`; docs/opentelemetry.md); the answer, plain JSON or
a stream of Server-Sent Events read as it passes (`app.proxy.sse`), becomes `output_messages`,
`finish_reasons`, the token counts, `response_id` and `response_model`.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Final

ENDPOINTS: Final = {
    "chat/completions": "chat.completions",
    "responses": "responses",
    "embeddings": "embeddings",
}
# The Responses API's events that end a stream.
RESPONSE_ENDS: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})
# Request parameters kept in the record's metadata (the content goes to the message fields).
_CONTENT_KEYS: Final = frozenset({"messages", "input", "instructions", "tools", "prompt"})
MAX_ERROR_CHARS: Final = 4000


def endpoint_of(method: str, path: str) -> str | None:
    """The recorded endpoint a call is (`chat.completions`, `responses`, `embeddings`), or
    None for a call passed through unrecorded."""
    return ENDPOINTS.get(path.strip("/")) if method == "POST" else None


def parse_json(body: bytes) -> dict[str, Any]:
    """`body` as a JSON object; an empty dict for anything else (the upstream judges it),
    a body nested too deep for the parser included: the call still goes upstream and is
    recorded, without the request's content."""
    try:
        parsed = json.loads(body) if body else {}
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _arguments(text: Any) -> Any:
    # The conventions keep tool arguments as a value; text that is no JSON stays text.
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # nested past the parser's limit: text, too
        return text


def _content_parts(content: Any) -> list[dict[str, Any]]:
    """Parts of a message's `content`: a string, or a list of typed parts (text kept;
    images and files named by type, a URL kept unless it is inline data)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else [content]:
        if not isinstance(part, dict):
            parts.append({"type": "text", "content": _text(part)})
        elif isinstance(part.get("text"), str):
            parts.append({"type": "text", "content": part["text"]})
        elif isinstance(part.get("refusal"), str):
            parts.append({"type": "refusal", "content": part["refusal"]})
        else:
            kind = str(part.get("type", "unknown"))
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            kept = {"type": kind}
            if isinstance(url, str) and not url.startswith("data:"):
                kept["uri"] = url
            parts.append(kept)
    return parts


def _tool_call_part(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {
        "type": "tool_call",
        "id": str(call_id or ""),
        "name": str(name or ""),
        "arguments": _arguments(arguments),
    }


def chat_input(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`(system_instructions, input_messages)` of a chat completions request."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "user"))
        if role in ("system", "developer"):
            system.extend(_content_parts(message.get("content")))
            continue
        if role == "tool":
            part = {
                "type": "tool_call_response",
                "id": str(message.get("tool_call_id", "")),
                "response": _text(message.get("content")),
            }
            messages.append({"role": "tool", "parts": [part]})
            continue
        parts = _content_parts(message.get("content"))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {} if isinstance(call, dict) else {}
            parts.append(
                _tool_call_part(call.get("id"), function.get("name"), function.get("arguments"))
            )
        messages.append({"role": role, "parts": parts})
    return system, messages


def responses_input(body: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`(system_instructions, input_messages)` of a Responses API request."""
    system = _content_parts(body.get("instructions"))
    given = body.get("input")
    if isinstance(given, str):
        return system, [{"role": "user", "parts": _content_parts(given)}]
    messages: list[dict[str, Any]] = []
    for item in given or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "function_call_output":
            part = {
                "type": "tool_call_response",
                "id": str(item.get("call_id", "")),
                "response": _text(item.get("output")),
            }
            messages.append({"role": "tool", "parts": [part]})
        elif kind == "function_call":
            call = _tool_call_part(item.get("call_id"), item.get("name"), item.get("arguments"))
            messages.append({"role": "assistant", "parts": [call]})
        elif "role" in item:
            role = str(item["role"])
            if role in ("system", "developer"):
                system.extend(_content_parts(item.get("content")))
            else:
                messages.append({"role": role, "parts": _content_parts(item.get("content"))})
    return system, messages


def embeddings_input(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The input of an embeddings request as one user message, a part per input."""
    given = body.get("input")
    inputs = [given] if isinstance(given, str) else list(given or [])
    return [{"role": "user", "parts": [{"type": "text", "content": _text(i)} for i in inputs]}]


@dataclass
class Answer:
    """What the upstream answered, assembled: the record's output fields."""

    status: int = 200
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    output_messages: list[dict[str, Any]] = field(default_factory=list)
    # The text the app was shown (a stream's deltas, joined), the record's `response`.
    text: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    reasoning_output_tokens: int | None = None
    # The upstream's error object (or the start of a body that is no JSON).
    error: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def usage(self, usage: Any) -> None:
        """Take the token counts of a chat, Responses or embeddings `usage` object."""
        if not isinstance(usage, dict):
            return
        self.input_tokens = _count(usage.get("prompt_tokens", usage.get("input_tokens")))
        self.output_tokens = _count(usage.get("completion_tokens", usage.get("output_tokens")))
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        self.cache_read_input_tokens = _count(details.get("cached_tokens"))
        done = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
        self.reasoning_output_tokens = _count(done.get("reasoning_tokens"))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class ChatChunks:
    """A streamed chat completion, chunk by chunk (`chat.completion.chunk` objects)."""

    def __init__(self) -> None:
        self.answer = Answer()
        self._texts: dict[int, list[str]] = {}
        self._calls: dict[int, dict[int, dict[str, Any]]] = {}
        self._finish: dict[int, str] = {}

    def take(self, chunk: dict[str, Any]) -> None:
        """One chunk's deltas, usage and ids."""
        answer = self.answer
        if "error" in chunk:
            answer.error = chunk["error"]
            return
        answer.response_id = chunk.get("id") or answer.response_id
        answer.response_model = chunk.get("model") or answer.response_model
        if chunk.get("usage"):
            answer.usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            index = int(choice.get("index", 0))
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self._texts.setdefault(index, []).append(delta["content"])
            for call in delta.get("tool_calls") or []:
                slot = self._calls.setdefault(index, {}).setdefault(
                    int(call.get("index", 0)), {"id": "", "name": "", "arguments": ""}
                )
                function = call.get("function") or {}
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] = function.get("name") or slot["name"]
                slot["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self._finish[index] = str(choice["finish_reason"])

    def assembled(self) -> Answer:
        """The answer so far, messages and finish reasons filled in."""
        answer = self.answer
        indexes = sorted(set(self._texts) | set(self._calls) | set(self._finish))
        answer.output_messages = []
        for index in indexes:
            text = "".join(self._texts.get(index, []))
            calls = self._calls.get(index, {})
            answer.output_messages.append(
                _assistant(
                    text,
                    [_tool_call_part(c["id"], c["name"], c["arguments"]) for c in calls.values()],
                    self._finish.get(index),
                )
            )
        answer.finish_reasons = [self._finish[i] for i in indexes if i in self._finish]
        answer.text = "".join(self._texts.get(indexes[0], [])) if indexes else ""
        return answer


def _assistant(text: str, calls: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    parts = ([{"type": "text", "content": text}] if text else []) + calls
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    if finish:
        message["finish_reason"] = finish
    return message


class ResponseEvents:
    """A streamed Responses API answer, event by event; the final `response` object, when it
    came, says everything, else the deltas seen so far do."""

    def __init__(self) -> None:
        self.final: dict[str, Any] | None = None
        self.started: dict[str, Any] = {}
        self._texts: list[str] = []
        self._calls: dict[str, dict[str, Any]] = {}
        self.error: Any = None

    def take(self, event: dict[str, Any]) -> None:
        """One event."""
        kind = event.get("type")
        if kind in RESPONSE_ENDS and isinstance(event.get("response"), dict):
            self.final = event["response"]
        elif kind == "response.created" and isinstance(event.get("response"), dict):
            self.started = event["response"]
        elif kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            self._texts.append(event["delta"])
        elif kind in ("response.output_item.added", "response.output_item.done"):
            item = event.get("item") or {}
            if item.get("type") == "function_call":
                self._calls[str(item.get("id"))] = dict(item)
        elif kind == "response.function_call_arguments.delta":
            call = self._calls.setdefault(str(event.get("item_id")), {"arguments": ""})
            call["arguments"] = str(call.get("arguments") or "") + str(event.get("delta", ""))
        elif kind == "error" or ("error" in event and kind is None):
            self.error = event.get("error", event)

    def assembled(self) -> Answer:
        """The answer: the final response's, else what the deltas said."""
        if self.final is not None:
            answer = response_answer(self.final)
            answer.text = "".join(self._texts) or answer.text
        else:
            answer = response_answer({**self.started, "output": []})
            calls = [
                _tool_call_part(c.get("call_id"), c.get("name"), c.get("arguments"))
                for c in self._calls.values()
            ]
            answer.text = "".join(self._texts)
            answer.output_messages = [_assistant(answer.text, calls, None)]
        answer.error = answer.error or self.error
        return answer


def chat_answer(body: dict[str, Any]) -> Answer:
    """The answer of a plain chat completion."""
    answer = Answer(response_id=body.get("id"), response_model=body.get("model"))
    answer.usage(body.get("usage"))
    for choice in body.get("choices") or []:
        message = choice.get("message") or {}
        text = message.get("content") if isinstance(message.get("content"), str) else ""
        calls = [
            _tool_call_part(
                c.get("id"),
                (c.get("function") or {}).get("name"),
                (c.get("function") or {}).get("arguments"),
            )
            for c in message.get("tool_calls") or []
            if isinstance(c, dict)
        ]
        finish = choice.get("finish_reason")
        answer.output_messages.append(_assistant(text or "", calls, finish))
        if finish:
            answer.finish_reasons.append(str(finish))
        if not answer.text:
            answer.text = text or ""
    return answer


def response_answer(body: dict[str, Any]) -> Answer:
    """The answer of a Responses API `response` object."""
    answer = Answer(response_id=body.get("id"), response_model=body.get("model"))
    answer.usage(body.get("usage"))
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in body.get("output") or []:
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    texts.append(part["text"])
        elif item.get("type") == "function_call":
            calls.append(
                _tool_call_part(item.get("call_id"), item.get("name"), item.get("arguments"))
            )
    status = body.get("status")
    finish = None
    if status == "completed":
        finish = "tool_calls" if calls else "stop"
    elif status == "incomplete":
        finish = str((body.get("incomplete_details") or {}).get("reason") or "incomplete")
    elif status == "failed":
        finish = "error"
    answer.text = "".join(texts)
    if texts or calls or finish:
        answer.output_messages = [_assistant(answer.text, calls, finish)]
    answer.finish_reasons = [finish] if finish else []
    answer.error = body.get("error")
    return answer


def embeddings_answer(body: dict[str, Any]) -> Answer:
    """The answer of an embeddings call: counts, not the vectors."""
    answer = Answer(response_model=body.get("model"))
    answer.usage(body.get("usage"))
    data = [d for d in body.get("data") or [] if isinstance(d, dict)]
    answer.extra = {"embeddings": len(data)}
    first = data[0].get("embedding") if data else None
    if isinstance(first, list):
        answer.extra["dimensions"] = len(first)
    return answer


def plain_answer(endpoint: str, status: int, body: bytes) -> Answer:
    """The answer of a call answered in one body (any status)."""
    parsed = parse_json(body)
    if status >= 400 or not parsed:
        answer = Answer(status=status)
        answer.error = (
            parsed.get("error") if parsed else body[:MAX_ERROR_CHARS].decode("utf-8", "replace")
        )
        return answer
    maker = {"chat.completions": chat_answer, "responses": response_answer}.get(
        endpoint, embeddings_answer
    )
    answer = maker(parsed)
    answer.status = status
    return answer
