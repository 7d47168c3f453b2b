"""Audit records out again as OTLP log events (`ractogateway-kafka tail --otlp`).

Each record becomes one `ExportLogsServiceRequest` holding one
`gen_ai.client.inference.operation.details` event, written as one line of OTLP JSON: the format
of the OpenTelemetry Collector's file exporter, which its `otlpjsonfile` receiver reads back, and
a body `POST /v1/logs` (of this service or any OTLP backend) takes as it is. The attributes are
the inverse of the receiver's mapping (docs/opentelemetry.md); a version 1 record's `prompt` and
`response` become one user and one assistant message. The record's own identity travels in `rg.*`
attributes: `rg.event_id`, `rg.digest` and, when the record has them, its chain position
(`rg.writer`, `rg.seq`, `rg.chain`), so what a backend shows can be traced to the trail.
"""

import base64
from collections.abc import Mapping
from typing import Any, Final

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from app.ingest import otlp
from app.kafka.stamps import parse_utc

SCOPE_NAME: Final = "ractogateway-kafka"
# Record field → attribute: the receiver's mapping turned round.
_ATTRIBUTES: Final = {field: attribute for attribute, field in otlp.FIELD_OF_ATTRIBUTE.items()}
# Header → attribute: where the record sits on the trail.
_HEADERS: Final = {
    "rg-event-id": "rg.event_id",
    "rg-digest": "rg.digest",
    "rg-writer": "rg.writer",
    "rg-seq": "rg.seq",
    "rg-chain": "rg.chain",
}


def any_value(value: Any) -> AnyValue:
    """Plain JSON as an OTLP `AnyValue` (objects as key-value lists)."""
    result = AnyValue()
    if isinstance(value, bool):
        result.bool_value = value
    elif isinstance(value, int):
        result.int_value = value
    elif isinstance(value, float):
        result.double_value = value
    elif isinstance(value, str):
        result.string_value = value
    elif isinstance(value, list):
        result.array_value.values.extend(any_value(item) for item in value)
    elif isinstance(value, dict):
        result.kvlist_value.values.extend(
            KeyValue(key=str(key), value=any_value(item)) for key, item in value.items()
        )
    return result  # None: an empty AnyValue


def _nanos(text: Any) -> int:
    if not isinstance(text, str):
        return 0
    try:
        moment = parse_utc(text)
    except ValueError:
        return 0
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _hex_bytes(text: Any, size: int) -> bytes:
    if isinstance(text, str) and len(text) == size * 2:
        try:
            return bytes.fromhex(text)
        except ValueError:
            return b""
    return b""


def logs_request_of(
    record: Mapping[str, Any], headers: Mapping[str, str]
) -> ExportLogsServiceRequest:
    """One stored audit record (its JSON value and its headers) as an OTLP logs request."""
    attributes: dict[str, Any] = {}
    for field, attribute in _ATTRIBUTES.items():
        if record.get(field) is not None:
            attributes[attribute] = record[field]
    if otlp.REQUEST_MODEL not in attributes and isinstance(record.get("model"), str):
        attributes[otlp.REQUEST_MODEL] = record["model"]
    if otlp.INPUT_MESSAGES not in attributes and isinstance(record.get("prompt"), str):
        attributes[otlp.INPUT_MESSAGES] = [_text_message("user", record["prompt"])]
    if otlp.OUTPUT_MESSAGES not in attributes and isinstance(record.get("response"), str):
        attributes[otlp.OUTPUT_MESSAGES] = [_text_message("assistant", record["response"])]
    if isinstance(record.get("user_id"), str):
        attributes[otlp.USER_ID] = record["user_id"]
    if isinstance(record.get("request_id"), str):
        attributes["rg.request_id"] = record["request_id"]
    attributes["rg.schema_version"] = record.get("schema_version", 1)
    for header, attribute in _HEADERS.items():
        if headers.get(header) is not None:
            attributes[attribute] = headers[header]
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    metadata = record.get("metadata") if isinstance(record.get("metadata"), dict) else {}
    service = metadata.get(otlp.SERVICE_NAME) if isinstance(metadata, dict) else None
    resource_logs.resource.attributes.append(
        KeyValue(key=otlp.SERVICE_NAME, value=any_value(service or otlp.UNKNOWN_SERVICE))
    )
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = SCOPE_NAME
    log = scope_logs.log_records.add()
    log.event_name = otlp.DETAILS_EVENT
    log.time_unix_nano = _nanos(record.get("timestamp_utc"))
    log.trace_id = _hex_bytes(record.get("trace_id"), 16)
    log.span_id = _hex_bytes(record.get("span_id"), 8)
    log.attributes.extend(
        KeyValue(key=key, value=any_value(value)) for key, value in attributes.items()
    )
    return request


def _text_message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def otlp_json_line(record: Mapping[str, Any], headers: Mapping[str, str]) -> str:
    """`logs_request_of` as one line of OTLP JSON (hex trace and span ids, as OTLP asks)."""
    request = logs_request_of(record, headers)
    document = json_format.MessageToDict(request)
    for resource in document.get("resourceLogs", []):
        for scope in resource.get("scopeLogs", []):
            for log in scope.get("logRecords", []):
                for name in ("traceId", "spanId"):
                    if name in log:  # proto3 JSON wrote base64
                        log[name] = _b64_to_hex(log[name])
    return orjson.dumps(document).decode("utf-8")


def _b64_to_hex(text: str) -> str:
    return base64.b64decode(text).hex()
