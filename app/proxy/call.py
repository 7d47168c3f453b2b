"""One proxied call as it went (`Call`: who, when, how it ended) and the audit event it becomes
(`event_of`)."""

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Final, Literal

from pydantic import ValidationError

from app.kafka import KafkaAuditEvent
from app.kafka.json_bounds import MAX_ID_CHARS
from app.kafka.models import MAX_TEXT_CHARS
from app.kafka.stamps import format_utc, new_event_id
from app.proxy.assembly import (
    MAX_ERROR_CHARS,
    Answer,
    chat_input,
    embeddings_input,
    responses_input,
)

# How a call ended, as the record's `metadata.proxy.outcome` says.
Outcome = Literal["ok", "upstream_error", "timeout", "unreachable", "cut", "client_gone"]
PROVIDER: Final = "openai"
UNKNOWN_MODEL: Final = "unknown"
# Request parameters left out of `metadata.proxy.request`: the content has fields of its own.
_CONTENT: Final = frozenset({"messages", "input", "instructions", "tools", "prompt", "user"})


@dataclass
class Call:
    """A call through the proxy to a recorded endpoint, filled in as it goes."""

    endpoint: str
    request: dict[str, Any]
    user_id: str
    stream: bool
    event_id: str = field(default_factory=new_event_id)
    started_utc: datetime = field(default_factory=lambda: datetime.now(UTC))
    _started: float = field(default_factory=time.perf_counter)
    first_byte_s: float | None = None
    ended_s: float | None = None
    upstream_request_id: str | None = None
    outcome: Outcome = "ok"
    detail: str | None = None

    def first_byte(self) -> None:
        """The upstream's first bytes of the answer (a stream's first event) arrived now."""
        if self.first_byte_s is None:
            self.first_byte_s = time.perf_counter() - self._started

    def end(self, outcome: Outcome | None = None, detail: str | None = None) -> None:
        """The call ended now (`outcome` when it did not end well)."""
        self.ended_s = time.perf_counter() - self._started
        if outcome is not None:
            self.outcome, self.detail = outcome, detail


def _id(value: Any) -> str | None:
    # An id field: text of 1-256 characters, else left out.
    text = _unicode(value)[:MAX_ID_CHARS] if isinstance(value, str) else None
    return text or None


def _unicode(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8")


def _last_user_text(messages: list[dict[str, Any]]) -> str | None:
    for message in reversed(messages):
        if message.get("role") == "user":
            texts = [p["content"] for p in message["parts"] if p.get("type") == "text"]
            return "\n".join(texts) or None
    return None


def _scalars(values: dict[str, Any]) -> dict[str, Any]:
    # At most 100 plain values: the metadata's bounds hold whatever a client sends.
    kept = (
        (key, value)
        for key, value in values.items()
        if isinstance(value, str | int | float | bool) and key not in _CONTENT
    )
    return {key[:MAX_ID_CHARS]: value for key, value in islice(kept, 100)}


def _error_of(error: Any) -> Any:
    # The upstream's error object, kept flat and short (it is the app's and the model's words).
    if isinstance(error, dict):
        return {
            k: v if not isinstance(v, str) else v[:MAX_ERROR_CHARS]
            for k, v in _scalars(error).items()
        }
    return None if error is None else str(error)[:MAX_ERROR_CHARS]


def _proxy_metadata(call: Call, answer: Answer) -> dict[str, Any]:
    tools = call.request.get("tools")
    proxy: dict[str, Any] = {
        "endpoint": call.endpoint,
        "stream": call.stream,
        "status": answer.status,
        "outcome": call.outcome,
        "request": _scalars(call.request),
    }
    if call.ended_s is not None:
        proxy["latency_ms"] = round(call.ended_s * 1000, 3)
    if call.first_byte_s is not None:
        proxy["time_to_first_token_ms" if call.stream else "time_to_first_byte_ms"] = round(
            call.first_byte_s * 1000, 3
        )
    if isinstance(tools, list):
        names = [
            t.get("name") or (t.get("function") or {}).get("name")
            for t in tools
            if isinstance(t, dict)
        ]
        proxy["tools"] = [str(n)[:MAX_ID_CHARS] for n in names if n][:100]
    if answer.error is not None:
        proxy["error"] = _error_of(answer.error)
    if call.detail:
        proxy["detail"] = call.detail[:MAX_ERROR_CHARS]
    proxy.update(answer.extra)
    return {"proxy": proxy}


def event_of(
    call: Call, answer: Answer, *, structured: bool = True, subject_field: str | None = None
) -> KafkaAuditEvent:
    """The audit event of a call (schema version 2). `structured`: messages in the GenAI fields
    (else, as with erasure on, as JSON text in `prompt` and `response`, which are sealed). Any
    call becomes an event: content beyond the record's bounds (nesting, items) is kept as text.
    `subject_field`: the metadata field erasure reads the subject from (RG_ERASURE_SUBJECT_FIELD),
    given the call's user."""
    if call.endpoint == "chat.completions":
        system, messages = chat_input(call.request)
    elif call.endpoint == "responses":
        system, messages = responses_input(call.request)
    else:
        system, messages = [], embeddings_input(call.request)
    request_model = _id(call.request.get("model"))
    fields: dict[str, Any] = {
        "event_id": call.event_id,
        "user_id": _unicode(call.user_id)[:MAX_ID_CHARS] or UNKNOWN_MODEL,
        "model": _id(answer.response_model) or request_model or UNKNOWN_MODEL,
        "operation": "embeddings" if call.endpoint == "embeddings" else "chat",
        "provider": PROVIDER,
        "request_model": request_model,
        "response_model": _id(answer.response_model),
        "response_id": _id(answer.response_id),
        "finish_reasons": [r[:MAX_ID_CHARS] for r in answer.finish_reasons if r] or None,
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "cache_read_input_tokens": answer.cache_read_input_tokens,
        "reasoning_output_tokens": answer.reasoning_output_tokens,
        "conversation_id": _id(call.request.get("conversation")),
        "request_id": _id(call.upstream_request_id),
        "start_time_utc": format_utc(call.started_utc),
        "end_time_utc": format_utc(datetime.now(UTC)),
        "metadata": _proxy_metadata(call, answer),
    }
    subject = {subject_field: fields["user_id"]} if subject_field else {}
    fields["metadata"].update(subject)
    if structured:
        try:
            return KafkaAuditEvent(
                **fields,
                system_instructions=system or None,
                input_messages=messages or None,
                output_messages=answer.output_messages or None,
                prompt=_last_user_text(messages),
                response=answer.text or None,
            )
        except ValidationError:
            pass  # beyond the bounds of structured content: kept as text below
    # As JSON text (ASCII: text that is no Unicode, a lone surrogate, is escaped, not refused).
    said = {"system_instructions": system, "input_messages": messages}
    prompt = json.dumps(said)[:MAX_TEXT_CHARS]
    response = (
        json.dumps(answer.output_messages)[:MAX_TEXT_CHARS] if answer.output_messages else None
    )
    try:
        return KafkaAuditEvent(**fields, prompt=prompt, response=response)
    except ValidationError:
        # Metadata beyond its bounds (or no Unicode): the call is still recorded, without it.
        fields["metadata"] = {
            "proxy": {"endpoint": call.endpoint, "outcome": call.outcome},
            **subject,
        }
        return KafkaAuditEvent(**fields, prompt=prompt, response=response)
