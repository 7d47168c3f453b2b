"""Run as a child process by tests/api/test_otlp.py: the `openai` SDK, instrumented by
`opentelemetry-instrumentation-openai-v2`, makes one chat call to OPENAI_BASE_URL and the
OpenTelemetry SDK exports its span over OTLP/HTTP (protobuf) to OTLP_URL/v1/traces."""

import os

from openai import OpenAI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def main() -> None:
    """One instrumented call, exported before the process ends."""
    provider = TracerProvider(resource=Resource.create({"service.name": "refund-bot"}))
    exporter = OTLPSpanExporter(endpoint=f"{os.environ['OTLP_URL']}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    OpenAIInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    client = OpenAI(base_url=os.environ["OPENAI_BASE_URL"], api_key="sk-test", max_retries=0)
    answer = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is our refund window?"}],
    )
    print(answer.choices[0].message.content)
    provider.shutdown()  # flushes the batch


if __name__ == "__main__":
    main()
