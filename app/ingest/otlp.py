"""OTLP/HTTP in: OpenTelemetry GenAI spans and log events as audit events (docs/opentelemetry.md).

Decoding uses the protobuf classes of `opentelemetry-proto` for both encodings OTLP/HTTP defines
(`application/x-protobuf`, and `application/json` through `google.protobuf.json_format`, which
knows OTLP JSON's rules but two: trace and span ids are hex there, not base64, and are fixed
here before parsing). A gzip body is inflated up to the same limit as a plain one.

What becomes a record, one per GenAI operation:
- a span with `gen_ai.operation.name`;
- a `gen_ai.client.inference.operation.details` log event;
- the older per-message events (`gen_ai.user.message`, `gen_ai.choice`, ...), grouped by the
  span they belong to.
Everything else is counted as ignored. The records are plain dicts of `KafkaAuditEvent` fields
(schema version 2), validated by whoever writes them; their `event_id` is derived from the
trace and span ids (or the log record's bytes), so an exporter's retry of a batch names the same
events and writes nothing twice, and their times are the telemetry's, so the retried body is the
same too.
"""

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from app.ingest.otlp_media import Encoding, OtlpPayloadError

# The GenAI semantic conventions' names (tests check them against
# `opentelemetry-semantic-conventions`).
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
SYSTEM: Final = "gen_ai.system"  # the provider's name before v1.37
REQUEST_MODEL: Final = "gen_ai.request.model"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
DATA_SOURCE_ID: Final = "gen_ai.data_source.id"
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
USER_ID: Final = "user.id"
ENDUSER_ID: Final = "enduser.id"  # deprecated for user.id, still sent
SERVICE_NAME: Final = "service.name"
EVENT_NAME: Final = "event.name"  # where log events named themselves before `event_name`
DETAILS_EVENT: Final = "gen_ai.client.inference.operation.details"
# The per-message events of the conventions up to v1.36, and the role each stands for.
MESSAGE_EVENTS: Final = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
CHOICE_EVENT: Final = "gen_ai.choice"
# Our extensions: the EU AI Act Art. 12(3) items the conventions have no attribute for.
RG_REFERENCE_DATABASE: Final = "rg.reference_database"
RG_MATCH_INPUT: Final = "rg.match_input"
RG_VERIFIED_BY: Final = "rg.verified_by"

# Attribute → record field, for the fields copied as they are (turned round by otlp_out).
FIELD_OF_ATTRIBUTE: Final = {
    OPERATION_NAME: "operation",
    PROVIDER_NAME: "provider",
    REQUEST_MODEL: "request_model",
    RESPONSE_MODEL: "response_model",
    RESPONSE_ID: "response_id",
    FINISH_REASONS: "finish_reasons",
    INPUT_TOKENS: "input_tokens",
    OUTPUT_TOKENS: "output_tokens",
    CACHE_READ_TOKENS: "cache_read_input_tokens",
    CACHE_CREATION_TOKENS: "cache_creation_input_tokens",
    REASONING_TOKENS: "reasoning_output_tokens",
    CONVERSATION_ID: "conversation_id",
    DATA_SOURCE_ID: "data_source_id",
    SYSTEM_INSTRUCTIONS: "system_instructions",
    INPUT_MESSAGES: "input_messages",
    OUTPUT_MESSAGES: "output_messages",
    RG_REFERENCE_DATABASE: "reference_database",
    RG_MATCH_INPUT: "match_input",
    RG_VERIFIED_BY: "verified_by",
}
_JSON_VALUED: Final = frozenset({SYSTEM_INSTRUCTIONS, INPUT_MESSAGES, OUTPUT_MESSAGES})
_LISTS: Final = frozenset({"finish_reasons", "verified_by"})
_NOT_METADATA: Final = frozenset({*FIELD_OF_ATTRIBUTE, SYSTEM, USER_ID, ENDUSER_ID, EVENT_NAME})
UNKNOWN_MODEL: Final = "unknown"
UNKNOWN_SERVICE: Final = "unknown_service"  # the SDKs' own default service.name


def decode_traces(body: bytes, encoding: Encoding) -> ExportTraceServiceRequest:
    """An `ExportTraceServiceRequest` from its bytes; `OtlpPayloadError` saying why not."""
    request = ExportTraceServiceRequest()
    _decode(request, body, encoding, _fix_trace_ids)
    return request


def decode_logs(body: bytes, encoding: Encoding) -> ExportLogsServiceRequest:
    """An `ExportLogsServiceRequest` from its bytes; `OtlpPayloadError` saying why not."""
    request = ExportLogsServiceRequest()
    _decode(request, body, encoding, _fix_log_ids)
    return request


def _decode(message: Message, body: bytes, encoding: Encoding, fix: Any) -> None:
    if encoding == "protobuf":
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeError) as exc:
            raise OtlpPayloadError(f"not a valid protobuf message: {exc}") from None
        return
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpPayloadError(f"not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise OtlpPayloadError("the JSON body must be an object")
    try:
        fix(parsed)
        # Unknown fields are ignored, as the OTLP specification asks of receivers.
        json_format.ParseDict(parsed, message, ignore_unknown_fields=True)
    except (json_format.ParseError, OtlpPayloadError, TypeError, AttributeError) as exc:
        raise OtlpPayloadError(f"not a valid OTLP JSON message: {exc}") from None


def _hex_to_base64(holder: dict[str, Any], name: str) -> None:
    # OTLP JSON writes trace and span ids as hex; proto3 JSON would read base64.
    value = holder.get(name)
    if value in (None, ""):
        return
    if not isinstance(value, str):
        raise OtlpPayloadError(f"{name} must be a hex string")
    try:
        holder[name] = base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        raise OtlpPayloadError(f"{name} {value[:40]!r} is not hex") from None


def _list(holder: Any, name: str) -> list[Any]:
    found = holder.get(name, []) if isinstance(holder, dict) else []
    if not isinstance(found, list):
        raise OtlpPayloadError(f"{name} must be an array")
    return [item for item in found if isinstance(item, dict)]


def _fix_trace_ids(parsed: dict[str, Any]) -> None:
    for resource in _list(parsed, "resourceSpans"):
        for scope in _list(resource, "scopeSpans"):
            for span in _list(scope, "spans"):
                for name in ("traceId", "spanId", "parentSpanId"):
                    _hex_to_base64(span, name)
                for link in _list(span, "links"):
                    _hex_to_base64(link, "traceId")
                    _hex_to_base64(link, "spanId")


def _fix_log_ids(parsed: dict[str, Any]) -> None:
    for resource in _list(parsed, "resourceLogs"):
        for scope in _list(resource, "scopeLogs"):
            for record in _list(scope, "logRecords"):
                _hex_to_base64(record, "traceId")
                _hex_to_base64(record, "spanId")


def value_of(any_value: AnyValue) -> Any:
    """An OTLP `AnyValue` as plain JSON (bytes as base64)."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(item) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(any_value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(any_value.bytes_value).decode()
    return getattr(any_value, kind)


def attributes_of(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP attributes as a dict (the last of a repeated key wins)."""
    return {pair.key: value_of(pair.value) for pair in pairs}


def _utc_of_nanos(nanos: int) -> str | None:
    if nanos <= 0:
        return None
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=nanos // 1000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Operations:
    """What a request holds: one record (a dict of event fields) per GenAI operation, and how
    many spans or log records were not GenAI operations (or were folded into one)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: int = 0


def _user_of(attributes: dict[str, Any], resource: dict[str, Any]) -> str:
    for source in (attributes, resource):
        for name in (USER_ID, ENDUSER_ID):
            if isinstance(source.get(name), str) and source[name]:
                return str(source[name])
    service = resource.get(SERVICE_NAME)
    return service if isinstance(service, str) and service else UNKNOWN_SERVICE


def _fields_of(attributes: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, target in FIELD_OF_ATTRIBUTE.items():
        value = attributes.get(name)
        if value is None:
            continue
        if name in _JSON_VALUED and isinstance(value, str):
            # Span attributes cannot hold structures: instrumentations send them as JSON text.
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                value = [{"role": "unknown", "parts": [{"type": "text", "content": value}]}]
        if target in _LISTS and isinstance(value, str):
            value = [value]  # a single value where the conventions say string[]
        fields[target] = value
    if "provider" not in fields and isinstance(attributes.get(SYSTEM), str):
        fields["provider"] = attributes[SYSTEM]
    return fields


def _metadata_of(
    attributes: dict[str, Any], resource: dict[str, Any], source: str, name: str
) -> dict[str, Any]:
    # What a reader needs to find the telemetry again, and the GenAI attributes no field holds
    # (temperature, max tokens, ...): kept, never dropped.
    metadata: dict[str, Any] = {"otel.source": source, "otel.name": name}
    if isinstance(resource.get(SERVICE_NAME), str):
        metadata[SERVICE_NAME] = resource[SERVICE_NAME]
    for key, value in attributes.items():
        if key.startswith(("gen_ai.", "rg.")) and key not in _NOT_METADATA:
            metadata[key] = value
    return metadata


def _record(
    *,
    event_id: str,
    attributes: dict[str, Any],
    resource: dict[str, Any],
    trace_id: bytes,
    span_id: bytes,
    start_nanos: int,
    end_nanos: int,
    source: str,
    name: str,
) -> dict[str, Any]:
    fields = _fields_of(attributes)
    record: dict[str, Any] = {
        "event_id": event_id,
        "user_id": _user_of(attributes, resource),
        "model": fields.get("response_model") or fields.get("request_model") or UNKNOWN_MODEL,
        "schema_version": 2,
        "metadata": _metadata_of(attributes, resource, source, name),
        **fields,
    }
    # The telemetry's times, not the service's clock: a retried batch is the same body.
    start, end = _utc_of_nanos(start_nanos), _utc_of_nanos(end_nanos)
    if start is not None:
        record["start_time_utc"] = start
    if end is not None:
        record["end_time_utc"] = end
    if end or start:
        record["timestamp_utc"] = end or start
    if len(trace_id) == 16 and any(trace_id):
        record["trace_id"] = trace_id.hex()
    if len(span_id) == 8 and any(span_id):
        record["span_id"] = span_id.hex()
    return record


def operations_of_traces(request: ExportTraceServiceRequest) -> Operations:
    """The GenAI operations among a request's spans (see the module docstring)."""
    found = Operations()
    for resource_spans in request.resource_spans:
        resource = _resource_of(resource_spans.resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                attributes = attributes_of(span.attributes)
                if not isinstance(attributes.get(OPERATION_NAME), str):
                    found.ignored += 1
                    continue
                found.events.append(
                    _record(
                        event_id=f"otel-span:{span.trace_id.hex()}:{span.span_id.hex()}",
                        attributes=attributes,
                        resource=resource,
                        trace_id=span.trace_id,
                        span_id=span.span_id,
                        start_nanos=span.start_time_unix_nano,
                        end_nanos=span.end_time_unix_nano,
                        source="span",
                        name=span.name,
                    )
                )
    return found


def _resource_of(resource: Resource) -> dict[str, Any]:
    return attributes_of(resource.attributes)


def _event_name(record: LogRecord, attributes: dict[str, Any]) -> str:
    if record.event_name:
        return str(record.event_name)
    name = attributes.get(EVENT_NAME)
    return name if isinstance(name, str) else ""


def _log_id(resource: Resource, record: LogRecord) -> str:
    # No ids of its own: the record's bytes (deterministic serialization) name it, the same in
    # either encoding and on every retry.
    digest = hashlib.sha256(resource.SerializeToString(deterministic=True))
    digest.update(record.SerializeToString(deterministic=True))
    return digest.hexdigest()[:32]


@dataclass
class _Conversation:
    """The per-message events (conventions up to v1.36) of one span, folded into one record."""

    first: LogRecord
    resource: dict[str, Any]
    attributes: dict[str, Any]
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    last_nanos: int = 0


def operations_of_logs(request: ExportLogsServiceRequest) -> Operations:
    """The GenAI operations among a request's log events (see the module docstring)."""
    found = Operations()
    conversations: dict[tuple[bytes, bytes] | str, _Conversation] = {}
    for resource_logs in request.resource_logs:
        resource = _resource_of(resource_logs.resource)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = attributes_of(record.attributes)
                name = _event_name(record, attributes)
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                if name == DETAILS_EVENT:
                    found.events.append(
                        _record(
                            event_id=f"otel-log:{_log_id(resource_logs.resource, record)}",
                            attributes=attributes,
                            resource=resource,
                            trace_id=record.trace_id,
                            span_id=record.span_id,
                            start_nanos=0,
                            end_nanos=nanos,
                            source="log",
                            name=name,
                        )
                    )
                elif name in MESSAGE_EVENTS or name == CHOICE_EVENT:
                    key: tuple[bytes, bytes] | str = (
                        (bytes(record.trace_id), bytes(record.span_id))
                        if any(record.span_id)
                        else _log_id(resource_logs.resource, record)
                    )
                    held = conversations.setdefault(
                        key, _Conversation(record, resource, dict(attributes))
                    )
                    _fold(held, name, value_of(record.body), attributes)
                    held.ids.append(_log_id(resource_logs.resource, record))
                    held.last_nanos = max(held.last_nanos, nanos)
                else:
                    found.ignored += 1
    for conversation in conversations.values():
        found.events.append(_conversation_record(conversation))
        found.ignored += len(conversation.ids) - 1
    return found


def _fold(held: _Conversation, name: str, body: Any, attributes: dict[str, Any]) -> None:
    held.attributes.update(attributes)
    body = body if isinstance(body, dict) else {"content": body}
    if name == CHOICE_EVENT:
        message = body.get("message") if isinstance(body.get("message"), dict) else {}
        output = {"role": str(message.get("role") or "assistant"), "parts": _parts_of(message)}
        if isinstance(body.get("finish_reason"), str):
            output["finish_reason"] = body["finish_reason"]
        held.outputs.append(output)
    else:
        role = body.get("role") if isinstance(body.get("role"), str) else MESSAGE_EVENTS[name]
        held.inputs.append({"role": role, "parts": _parts_of(body)})


def _parts_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if content is not None:
        text = content if isinstance(content, str) else orjson.dumps(content).decode()
        if message.get("id") is not None:  # a tool's answer
            parts.append({"type": "tool_call_response", "id": message["id"], "response": text})
        else:
            parts.append({"type": "text", "content": text})
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            raw = call.get("function")
            function: dict[str, Any] = raw if isinstance(raw, dict) else {}
            part = {"type": "tool_call", "id": call.get("id"), "name": function.get("name")}
            if "arguments" in function:
                part["arguments"] = function["arguments"]
            parts.append({k: v for k, v in part.items() if v is not None})
    return parts


def _conversation_record(held: _Conversation) -> dict[str, Any]:
    first = held.first
    # Named by the span when the events have one, else by the first event's bytes.
    if any(first.span_id):
        event_id = f"otel-events:{first.trace_id.hex()}:{first.span_id.hex()}"
    else:
        event_id = f"otel-events:{held.ids[0]}"
    attributes = dict(held.attributes)
    if held.inputs:
        attributes[INPUT_MESSAGES] = held.inputs
    if held.outputs:
        attributes[OUTPUT_MESSAGES] = held.outputs
    name = held.attributes.get(EVENT_NAME)
    return _record(
        event_id=event_id,
        attributes=attributes,
        resource=held.resource,
        trace_id=first.trace_id,
        span_id=first.span_id,
        start_nanos=0,
        end_nanos=held.last_nanos,
        source="events",
        name=str(first.event_name or name or "gen_ai.events"),
    )


def traces_response(rejected: int, message: str, encoding: Encoding) -> bytes:
    """An `ExportTraceServiceResponse`: partial success when `rejected` spans were refused."""
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=message)
        )
    return encode(response, encoding)


def logs_response(rejected: int, message: str, encoding: Encoding) -> bytes:
    """An `ExportLogsServiceResponse`: partial success when `rejected` records were refused."""
    response = ExportLogsServiceResponse()
    if rejected or message:
        response.partial_success.CopyFrom(
            ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        )
    return encode(response, encoding)


def status_body(code: int, message: str, encoding: Encoding) -> bytes:
    """A `google.rpc.Status`, the body of an OTLP/HTTP error answer."""
    return encode(status_pb2.Status(code=code, message=message), encoding)


def encode(message: Message, encoding: Encoding) -> bytes:
    """`message` in the request's encoding."""
    if encoding == "protobuf":
        return message.SerializeToString()
    return bytes(orjson.dumps(json_format.MessageToDict(message)))
