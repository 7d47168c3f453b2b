"""Run as a child process by tests/api/test_otlp.py: the `openai` SDK, instrumented by
`opentelemetry-instrumentation-openai-v2`, makes one chat call to OPENAI_BASE_URL and the
OpenTelemetry SDK exports its span over OTLP/HTTP (protobuf) to OTLP_URL/v1/traces and, with
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=span_and_event, its
gen_ai.client.inference.operation.details event to OTLP_URL/v1/logs."""

import os

from openai import OpenAI
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main() -> None:
    """One instrumented call, exported before the process ends."""
    resource = Resource.create({"service.name": "refund-bot"})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=f"{os.environ['OTLP_URL']}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{os.environ['OTLP_URL']}/v1/logs"))
    )
    OpenAIInstrumentor().instrument(  # type: ignore[no-untyped-call]
        tracer_provider=provider, logger_provider=logs
    )
    client = OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="sk-test", max_retries=0)
    answer = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is our refund window?"}],
    )
    print(answer.choices[0].message.content)
    provider.shutdown()  # flushes the batches
    logs.shutdown()


if __name__ == "__main__":
    main()
