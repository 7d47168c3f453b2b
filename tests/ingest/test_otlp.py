"""Broker-free checks of the OTLP decoding and mapping (app/ingest/otlp.py): the attribute keys
are the semantic conventions' own constants, the older per-message events fold into one
operation, ids are derived from the telemetry and bad payloads are named."""

import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import user_attributes as user
from opentelemetry.semconv.attributes import service_attributes as service

from app.ingest import otlp
from app.ingest.otlp_media import OtlpPayloadError
from app.kafka import KafkaAuditEvent


def test_unit_keys_are_the_semantic_conventions_constants() -> None:
    assert otlp.OPERATION_NAME == gen_ai.GEN_AI_OPERATION_NAME
    assert otlp.PROVIDER_NAME == gen_ai.GEN_AI_PROVIDER_NAME
    assert otlp.SYSTEM == gen_ai.GEN_AI_SYSTEM
    assert otlp.REQUEST_MODEL == gen_ai.GEN_AI_REQUEST_MODEL
    assert otlp.RESPONSE_MODEL == gen_ai.GEN_AI_RESPONSE_MODEL
    assert otlp.RESPONSE_ID == gen_ai.GEN_AI_RESPONSE_ID
    assert otlp.FINISH_REASONS == gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
    assert otlp.INPUT_TOKENS == gen_ai.GEN_AI_USAGE_INPUT_TOKENS
    assert otlp.OUTPUT_TOKENS == gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
    assert otlp.CACHE_READ_TOKENS == gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
    assert otlp.CACHE_CREATION_TOKENS == gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
    assert otlp.REASONING_TOKENS == gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
    assert otlp.CONVERSATION_ID == gen_ai.GEN_AI_CONVERSATION_ID
    assert otlp.DATA_SOURCE_ID == gen_ai.GEN_AI_DATA_SOURCE_ID
    assert otlp.SYSTEM_INSTRUCTIONS == gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS
    assert otlp.INPUT_MESSAGES == gen_ai.GEN_AI_INPUT_MESSAGES
    assert otlp.OUTPUT_MESSAGES == gen_ai.GEN_AI_OUTPUT_MESSAGES
    assert otlp.USER_ID == user.USER_ID
    assert otlp.SERVICE_NAME == service.SERVICE_NAME
    # The rg.* extensions are documented (docs/opentelemetry.md) and map to record fields.
    for name in (otlp.RG_REFERENCE_DATABASE, otlp.RG_MATCH_INPUT, otlp.RG_VERIFIED_BY):
        assert name.startswith("rg.")
        assert otlp.FIELD_OF_ATTRIBUTE[name] in KafkaAuditEvent.model_fields


def _text(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def _event(name: str, body: AnyValue, span: bytes, nanos: int) -> LogRecord:
    return LogRecord(
        event_name=name,
        body=body,
        trace_id=b"\x01" * 16,
        span_id=span,
        time_unix_nano=nanos,
        attributes=[KeyValue(key="gen_ai.system", value=_text("openai"))],
    )


def _kv(**values: AnyValue) -> AnyValue:
    return AnyValue(
        kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in values.items()])
    )


def test_unit_older_per_message_events_fold_into_one_operation_per_span() -> None:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    span = b"\x02" * 8
    scope.log_records.extend(
        [
            _event("gen_ai.system.message", _kv(content=_text("Be brief.")), span, 10),
            _event("gen_ai.user.message", _kv(content=_text("Hi?")), span, 11),
            _event(
                "gen_ai.choice",
                _kv(
                    index=AnyValue(int_value=0),
                    finish_reason=_text("stop"),
                    message=_kv(role=_text("assistant"), content=_text("Hello.")),
                ),
                span,
                12,
            ),
            LogRecord(body=_text("an ordinary log line")),
        ]
    )
    found = otlp.operations_of_logs(request)
    (record,) = found.events
    assert found.ignored == 3  # the plain log line, and two events folded into the first's
    assert record["event_id"] == f"otel-events:{'01' * 16}:{'02' * 8}"
    assert record["provider"] == "openai"
    assert record["input_messages"] == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hi?"}]},
    ]
    assert record["output_messages"] == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello."}],
            "finish_reason": "stop",
        }
    ]
    event = KafkaAuditEvent.model_validate(record)
    assert event.schema_version == 2
    assert event.model == otlp.UNKNOWN_MODEL
    assert event.user_id == otlp.UNKNOWN_SERVICE


def test_unit_otlp_json_ids_are_hex_and_bad_payloads_are_named() -> None:
    trace = "5b8efff798038103d269b633813fc60c"
    span = {
        "traceId": trace,
        "spanId": "eee19b7ec3c1b174",
        "name": "chat m",
        "kind": 2,
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}],
    }
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}).encode()
    request = otlp.decode_traces(body, "json")
    assert request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() == trace
    assert otlp.operations_of_traces(request).events[0]["event_id"].startswith(f"otel-span:{trace}")
    with pytest.raises(OtlpPayloadError, match="not hex"):
        otlp.decode_traces(body.replace(trace.encode(), b"xyz"), "json")
    with pytest.raises(OtlpPayloadError, match="protobuf"):
        otlp.decode_traces(b"\xff\xff", "protobuf")


def test_unit_a_single_string_where_a_string_array_is_meant_is_taken_as_one_item() -> None:
    request = otlp.decode_traces(
        json.dumps(
            {
                "resourceSpans": [
                    {
                        "scopeSpans": [
                            {
                                "spans": [
                                    {
                                        "traceId": "5b8efff798038103d269b633813fc60c",
                                        "spanId": "eee19b7ec3c1b174",
                                        "attributes": [
                                            {"key": k, "value": {"stringValue": v}}
                                            for k, v in (
                                                (gen_ai.GEN_AI_OPERATION_NAME, "chat"),
                                                (gen_ai.GEN_AI_RESPONSE_FINISH_REASONS, "stop"),
                                                (otlp.RG_VERIFIED_BY, "dr-a"),
                                            )
                                        ],
                                    }
                                ]
                            }
                        ]
                    }
                ]
            }
        ).encode(),
        "json",
    )
    (record,) = otlp.operations_of_traces(request).events
    event = KafkaAuditEvent.model_validate(record)
    assert (event.finish_reasons, event.verified_by) == (["stop"], ["dr-a"])
