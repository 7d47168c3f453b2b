"""POST /v1/traces and /v1/logs on a real service process, fed by the OpenTelemetry Python SDK's
OTLP/HTTP exporter (protobuf) and by curl (OTLP JSON); the records read back from the real broker
and checked by `ractogateway-kafka verify`."""

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.attributes import user_attributes as user

from tests.helpers.kafka import read_all, records_in
from tests.helpers.processes import run_cli
from tests.helpers.service import LiveService, running_service

pytestmark = pytest.mark.broker

INPUT = [{"role": "user", "parts": [{"type": "text", "content": "What is our refund window?"}]}]
OUTPUT = [
    {
        "role": "assistant",
        "parts": [{"type": "text", "content": "30 days."}],
        "finish_reason": "stop",
    }
]


@pytest.fixture
def service(kafka_bootstrap: str, tmp_path: Path) -> Iterator[LiveService]:
    with running_service(kafka_bootstrap, tmp_path / "svc", max_body_bytes="200000") as live:
        yield live


def _spans() -> list[ReadableSpan]:
    """A chat span shaped as the GenAI instrumentations make it, inside a non-GenAI span."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("opentelemetry.instrumentation.openai_v2")
    with (
        tracer.start_as_current_span("POST /ask"),
        tracer.start_as_current_span("chat gpt-4o") as span,
    ):
        span.set_attributes(
            {
                gen_ai.GEN_AI_OPERATION_NAME: "chat",
                gen_ai.GEN_AI_PROVIDER_NAME: "openai",
                gen_ai.GEN_AI_REQUEST_MODEL: "gpt-4o",
                gen_ai.GEN_AI_RESPONSE_MODEL: "gpt-4o-2024-08-06",
                gen_ai.GEN_AI_RESPONSE_ID: "chatcmpl-1",
                gen_ai.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
                gen_ai.GEN_AI_USAGE_INPUT_TOKENS: 12,
                gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: 3,
                gen_ai.GEN_AI_CONVERSATION_ID: "conv-7",
                gen_ai.GEN_AI_REQUEST_TEMPERATURE: 0.2,
                gen_ai.GEN_AI_INPUT_MESSAGES: json.dumps(INPUT),
                gen_ai.GEN_AI_OUTPUT_MESSAGES: json.dumps(OUTPUT),
                user.USER_ID: "user-42",
            }
        )
    provider.shutdown()
    return list(memory.get_finished_spans())


async def _records(bootstrap: str, topic: str, count: int) -> list[Any]:
    messages = await read_all(bootstrap, topic, count)
    assert await records_in(bootstrap, topic) == count
    return messages


def _verify(service: LiveService, bootstrap: str, tmp_path: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env["RG_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    done = run_cli(["verify", "--topic", service.audit_topic, "--json"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


async def test_sdk_exported_genai_span_is_one_verified_record_and_a_retry_adds_none(
    service: LiveService, kafka_bootstrap: str, tmp_path: Path
) -> None:
    spans = _spans()
    assert len(spans) == 2
    exporter = OTLPSpanExporter(endpoint=f"{service.url}/v1/traces")
    assert await asyncio.to_thread(exporter.export, spans) == SpanExportResult.SUCCESS
    # The exporter's retry of the same batch: accepted, nothing written twice.
    assert await asyncio.to_thread(exporter.export, spans) == SpanExportResult.SUCCESS
    exporter.shutdown()  # type: ignore[no-untyped-call]
    (message,) = await _records(kafka_bootstrap, service.audit_topic, 1)
    record = message.value
    chat = next(span for span in spans if span.name == "chat gpt-4o")
    assert chat.context is not None
    assert record["event_id"] == (
        f"otel-span:{chat.context.trace_id:032x}:{chat.context.span_id:016x}"
    )
    assert record["schema_version"] == 2
    assert record["user_id"] == "user-42"
    assert record["model"] == "gpt-4o-2024-08-06"
    assert record["operation"] == "chat"
    assert record["provider"] == "openai"
    assert record["request_model"] == "gpt-4o"
    assert record["response_id"] == "chatcmpl-1"
    assert record["finish_reasons"] == ["stop"]
    assert (record["input_tokens"], record["output_tokens"]) == (12, 3)
    assert record["conversation_id"] == "conv-7"
    assert record["input_messages"] == INPUT
    assert record["output_messages"] == OUTPUT
    assert record["trace_id"] == f"{chat.context.trace_id:032x}"
    assert record["start_time_utc"] < record["end_time_utc"] == record["timestamp_utc"]
    assert record["metadata"]["gen_ai.request.temperature"] == 0.2
    assert record["metadata"]["service.name"] == "support-bot"
    assert "prompt" not in record
    # Chain headers and a digest of the stored bytes; `verify` finds the trail clean.
    raw = message.value
    assert message.header("rg-schema-version") == "2"
    assert message.header("rg-seq") == "0"
    assert (message.header("rg-chain") or "").startswith("sha256:")
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert message.header("rg-digest") == digest
    report = await asyncio.to_thread(_verify, service, kafka_bootstrap, tmp_path)
    assert report["records_checked"] == 1
    assert not report["problems"]
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{service.url}/metrics")).text
    assert 'rg_otlp_items_total{outcome="ignored",signal="traces"} 2.0' in metrics
    # The retry's operation is answered with its first receipt: counted again, written once.
    assert 'rg_otlp_items_total{outcome="recorded",signal="traces"} 2.0' in metrics
    # Out again: `tail --otlp` prints the record as an OTLP logs request, which an OTLP
    # receiver (here this one) takes as it is: the operation comes back with its fields.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RG_")}
    env["RG_KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    tailed = await asyncio.to_thread(
        run_cli,
        ["tail", service.audit_topic, "--from-beginning", "--otlp", "--max-messages", "1"],
        cwd=tmp_path,
        env=env,
    )
    assert tailed.returncode == 0, tailed.stderr
    (line,) = tailed.stdout.splitlines()
    async with httpx.AsyncClient(timeout=30) as client:
        again = await client.post(
            f"{service.url}/v1/logs", content=line, headers={"content-type": "application/json"}
        )
    assert again.status_code == 200, again.text
    (_, replayed) = sorted(
        await _records(kafka_bootstrap, service.audit_topic, 2), key=lambda m: m.offset
    )
    assert replayed.value["event_id"].startswith("otel-log:")
    for name in ("operation", "model", "input_messages", "output_messages", "trace_id", "user_id"):
        assert replayed.value[name] == record[name], name
    assert replayed.value["metadata"]["rg.digest"] == message.header("rg-digest")


def _curl(url: str, body: bytes, *headers: str) -> tuple[int, bytes, str]:
    args = ["curl", "-sS", "-o", "-", "-D", "/dev/stderr", "-X", "POST", url]
    for header in headers:
        args += ["-H", header]
    done = subprocess.run(
        [*args, "--data-binary", "@-"], input=body, capture_output=True, timeout=60, check=False
    )
    head = done.stderr.decode()
    status = int(head.split()[1]) if head.startswith("HTTP/") else 0
    return status, done.stdout, head


def _details_event(trace_id: str, span_id: str) -> dict[str, Any]:
    def text(value: str) -> dict[str, Any]:
        return {"stringValue": value}

    message_list = {
        "arrayValue": {
            "values": [
                {
                    "kvlistValue": {
                        "values": [
                            {"key": "role", "value": text("user")},
                            {
                                "key": "parts",
                                "value": {
                                    "arrayValue": {
                                        "values": [
                                            {
                                                "kvlistValue": {
                                                    "values": [
                                                        {"key": "type", "value": text("text")},
                                                        {"key": "content", "value": text("Hi")},
                                                    ]
                                                }
                                            }
                                        ]
                                    }
                                },
                            },
                        ]
                    }
                }
            ]
        }
    }
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": text("bot")}]},
                "scopeLogs": [
                    {
                        "scope": {"name": "test"},
                        "logRecords": [
                            {
                                "timeUnixNano": "1765000000000000000",
                                # Event names have no constants in the package.
                                "eventName": "gen_ai.client.inference.operation.details",
                                "traceId": trace_id,
                                "spanId": span_id,
                                "attributes": [
                                    {"key": gen_ai.GEN_AI_OPERATION_NAME, "value": text("chat")},
                                    {"key": gen_ai.GEN_AI_REQUEST_MODEL, "value": text("m-1")},
                                    {
                                        "key": gen_ai.GEN_AI_USAGE_INPUT_TOKENS,
                                        "value": {"intValue": "5"},
                                    },
                                    {"key": gen_ai.GEN_AI_INPUT_MESSAGES, "value": message_list},
                                    {
                                        "key": "rg.verified_by",
                                        "value": {
                                            "arrayValue": {"values": [text("dr-a"), text("dr-b")]}
                                        },
                                    },
                                    {"key": "rg.reference_database", "value": text("db-v3")},
                                ],
                            },
                            {"timeUnixNano": "1765000000000000001", "body": text("plain log")},
                        ],
                    }
                ],
            }
        ]
    }


async def test_curl_otlp_json_logs_and_gzip_become_records_and_errors_have_status_bodies(
    service: LiveService, kafka_bootstrap: str
) -> None:
    url = f"{service.url}/v1/logs"
    body = json.dumps(_details_event("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"))
    status, answer, head = await asyncio.to_thread(
        _curl, url, body.encode(), "Content-Type: application/json"
    )
    assert status == 200, (answer, head)
    assert json.loads(answer) == {}
    # The same batch again, gzip: a retry, nothing new.
    status, answer, _ = await asyncio.to_thread(
        _curl,
        url,
        gzip.compress(body.encode()),
        "Content-Type: application/json",
        "Content-Encoding: gzip",
    )
    assert status == 200, answer
    (message,) = await _records(kafka_bootstrap, service.audit_topic, 1)
    record = message.value
    assert record["operation"] == "chat"
    assert record["model"] == "m-1"
    assert record["input_tokens"] == 5
    assert record["input_messages"] == [
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]}
    ]
    assert record["verified_by"] == ["dr-a", "dr-b"]
    assert record["reference_database"] == "db-v3"
    assert record["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert record["user_id"] == "bot"
    assert record["timestamp_utc"] == "2025-12-06T05:46:40.000000Z"
    # Malformed protobuf: 400 with a google.rpc.Status in protobuf.
    status, answer, head = await asyncio.to_thread(
        _curl, url, b"\xff\xff\xff", "Content-Type: application/x-protobuf"
    )
    assert status == 400
    assert "application/x-protobuf" in head
    assert "protobuf" in status_pb2.Status.FromString(answer).message
    # Not hex ids in JSON: 400, Status as JSON.
    status, answer, _ = await asyncio.to_thread(
        _curl,
        url,
        json.dumps(_details_event("zz", "")).encode(),
        "Content-Type: application/json",
    )
    assert status == 400
    assert "traceId" in json.loads(answer)["message"]
    # A content type OTLP does not define: 415.
    status, answer, _ = await asyncio.to_thread(_curl, url, b"x", "Content-Type: text/plain")
    assert status == 415
    assert "Content-Type" in json.loads(answer)["message"]
    # Above RG_MAX_BODY_BYTES: 413, still a Status body.
    status, answer, _ = await asyncio.to_thread(
        _curl, url, b"0" * 300_000, "Content-Type: application/x-protobuf"
    )
    assert status == 413
    assert "RG_MAX_BODY_BYTES" in status_pb2.Status.FromString(answer).message
    # Nothing else reached the trail.
    assert await records_in(kafka_bootstrap, service.audit_topic) == 1


async def test_an_invalid_operation_is_a_partial_success_naming_it(
    service: LiveService, kafka_bootstrap: str
) -> None:
    event = _details_event("5b8efff798038103d269b633813fc60d", "eee19b7ec3c1b175")
    attributes = event["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["attributes"]
    attributes.append({"key": gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, "value": {"intValue": "-1"}})
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(f"{service.url}/v1/logs", json=event)
    assert answer.status_code == 200, answer.text
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1"
    assert "output_tokens" in partial["errorMessage"]
    assert await records_in(kafka_bootstrap, service.audit_topic) == 0


def _chat_spans(count: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "batch-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for index in range(count):
        with tracer.start_as_current_span(f"chat m-{index}") as span:
            span.set_attribute(gen_ai.GEN_AI_OPERATION_NAME, "chat")
            span.set_attribute(gen_ai.GEN_AI_REQUEST_MODEL, f"m-{index}")
    provider.shutdown()
    return list(memory.get_finished_spans())


async def test_backpressure_is_503_with_retry_after_and_the_exporter_s_retries_succeed(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # At most one record waiting for Kafka: a batch of 3 operations meets backpressure (each
    # attempt writes at least one).
    spans = _chat_spans(3)
    body = ExportTraceServiceRequest()
    body.resource_spans.extend(encode_spans(spans).resource_spans)
    with running_service(kafka_bootstrap, tmp_path / "svc", max_in_flight="1") as service:
        async with httpx.AsyncClient(timeout=30) as client:
            first = await client.post(
                f"{service.url}/v1/traces",
                content=body.SerializeToString(),
                headers={"content-type": "application/x-protobuf"},
            )
        assert first.status_code == 503, first.content
        assert int(first.headers["retry-after"]) > 0
        assert first.headers["content-type"] == "application/x-protobuf"
        refused = status_pb2.Status.FromString(first.content)
        assert refused.code == 14  # google.rpc.Code UNAVAILABLE
        assert "waiting for Kafka" in refused.message
        # The SDK's exporter retries the same batch on 503 until it is written whole.
        exporter = OTLPSpanExporter(endpoint=f"{service.url}/v1/traces", timeout=60)
        assert await asyncio.to_thread(exporter.export, spans) == SpanExportResult.SUCCESS
        exporter.shutdown()  # type: ignore[no-untyped-call]
        records = await _records(kafka_bootstrap, service.audit_topic, 3)
    assert sorted(r.value["model"] for r in records) == [f"m-{i}" for i in range(3)]


COMPLETION = {
    "id": "chatcmpl-scripted-1",
    "object": "chat.completion",
    "created": 1_765_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Thirty days."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 14, "completion_tokens": 3, "total_tokens": 17},
}


@contextlib.contextmanager
def _scripted_openai() -> Iterator[str]:
    """An OpenAI-compatible server on loopback answering every chat call with COMPLETION."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            body = json.dumps(COMPLETION).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_the_openai_sdk_instrumented_by_openai_v2_lands_on_the_trail(
    service: LiveService, kafka_bootstrap: str, tmp_path: Path
) -> None:
    with _scripted_openai() as openai_url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RG_", "OTEL_"))},
            "OPENAI_BASE_URL": openai_url,
            "OTLP_URL": service.url,
            "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_and_event",
        }
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(Path(__file__).with_name("openai_client.py"))],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Thirty days."
    # The span (over /v1/traces) and its details event (over /v1/logs, from the SDK's log
    # exporter) are one record each, joined by the span's ids.
    messages = await _records(kafka_bootstrap, service.audit_topic, 2)
    by_source = {m.value["metadata"]["otel.source"]: m.value for m in messages}
    assert set(by_source) == {"span", "log"}
    assert by_source["span"]["span_id"] == by_source["log"]["span_id"]
    for record in by_source.values():
        assert record["operation"] == "chat"
        assert record["provider"] == "openai"
        assert record["request_model"] == "gpt-4o-mini"
        assert record["model"] == record["response_model"] == "gpt-4o-mini-2024-07-18"
        assert record["response_id"] == "chatcmpl-scripted-1"
        assert (record["input_tokens"], record["output_tokens"]) == (14, 3)
        assert record["finish_reasons"] == ["stop"]
        assert record["user_id"] == "refund-bot"  # no user.id: the service name
        (asked,) = record["input_messages"]
        assert asked["role"] == "user"
        assert asked["parts"][0]["content"] == "What is our refund window?"
        (said,) = record["output_messages"]
        assert said["parts"][0]["content"] == "Thirty days."
