"""GenAI spans ingested over OTLP/HTTP protobuf against the same events through POST /audit/batch
(`make bench-otlp`): 8 connections, 100 operations per request, on the real service and broker.

Each request carries operations no earlier request had (fresh trace and span ids), so every one
is written, never answered as a replay. The batch line sends the very records the receiver makes
of the same spans (`app.ingest.otlp.operations_of_traces`), with event ids of their own. Per line:
operations/s, p50/p99 request latency, and the service's CPU (utime + stime of its process over
the line): µs per operation (a span, or a batch's event), µs per request (an export of `--spans`
spans, or a batch as large) and its share of one core. The client is Python (httpx) on the same
machine: its own CPU is reported too, as it competes with the service for the cores.

    python -m bench.otlp [--seconds 15] [--connections 8] [--spans 100] [--out bench/results]
"""

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from app.embedded import free_port
from app.ingest.otlp import operations_of_traces
from bench.procfs import CpuProbe, cpu_seconds
from bench.run import kafka_broker
from bench.service import Service

PROMPT = "Summarise our refund policy in one sentence. " * 20
ANSWER = "Refunds are accepted within 30 days of purchase with a receipt. " * 10


def _attribute(key: str, value: str | int) -> KeyValue:
    any_value = (
        AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    )
    return KeyValue(key=key, value=any_value)


def traces_request(spans: int) -> ExportTraceServiceRequest:
    """`spans` chat spans as the GenAI instrumentations make them, ids never used before."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.append(_attribute("service.name", "bench-bot"))
    scope = resource.scope_spans.add()
    now = time.time_ns()
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": PROMPT}]}])
    answers = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": ANSWER}]}])
    for _ in range(spans):
        span = scope.spans.add()
        span.trace_id = uuid.uuid4().bytes
        span.span_id = os.urandom(8)
        span.name = "chat gpt-4o"
        span.start_time_unix_nano = now
        span.end_time_unix_nano = now + 1_000_000
        span.attributes.extend(
            [
                _attribute("gen_ai.operation.name", "chat"),
                _attribute("gen_ai.provider.name", "openai"),
                _attribute("gen_ai.request.model", "gpt-4o"),
                _attribute("gen_ai.usage.input_tokens", 120),
                _attribute("gen_ai.usage.output_tokens", 40),
                _attribute("user.id", "user-42"),
                _attribute("gen_ai.input.messages", messages),
                _attribute("gen_ai.output.messages", answers),
            ]
        )
    return request


def batch_body(spans: int) -> bytes:
    """The records the receiver would make of `spans` fresh spans, as a POST /audit/batch."""
    events = operations_of_traces(traces_request(spans)).events
    for event in events:
        event["event_id"] = f"batch:{uuid.uuid4().hex}"
    return json.dumps({"events": events}).encode()


@dataclass
class Result:
    """One line's figures."""

    line: str
    operations: int
    seconds: float
    operations_per_s: float
    p50_ms: float
    p99_ms: float
    service_cpu_us_per_operation: float
    service_cpu_us_per_request: float
    service_cpu_percent: float
    client_cpu_percent: float
    refused: int


async def _drive(
    url: str,
    headers: dict[str, str],
    make: Callable[[], bytes],
    *,
    connections: int,
    seconds: float,
    per_request: int,
) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    refused = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal refused
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1)) as client:
            while time.monotonic() < deadline:
                body = make()  # built before the clock starts for this request
                started = time.perf_counter()
                answer = await client.post(url, content=body, headers=headers)
                if answer.status_code != 200:
                    refused += 1
                    continue
                latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(latencies) * per_request, latencies, refused


def measure(service: Service, line: str, *, connections: int, seconds: float, spans: int) -> Result:
    """One line against the running service."""
    if line == "otlp":
        url, headers = f"{service.url}/v1/traces", {"content-type": "application/x-protobuf"}

        def make() -> bytes:
            return traces_request(spans).SerializeToString()

    else:
        url, headers = f"{service.url}/audit/batch", {"content-type": "application/json"}

        def make() -> bytes:
            return batch_body(spans)

    probe = CpuProbe({"service": service.pid})
    client_before = cpu_seconds(os.getpid())
    probe.start()
    started = time.monotonic()
    done, latencies, refused = asyncio.run(
        _drive(url, headers, make, connections=connections, seconds=seconds, per_request=spans)
    )
    elapsed = time.monotonic() - started
    probe.stop()
    client_used = cpu_seconds(os.getpid()) - client_before
    latencies.sort()
    service_used = probe.used_s["service"]
    return Result(
        line="POST /v1/traces (protobuf)" if line == "otlp" else "POST /audit/batch (JSON)",
        operations=done,
        seconds=round(elapsed, 2),
        operations_per_s=round(done / elapsed, 1),
        p50_ms=round(1000 * statistics.median(latencies), 1) if latencies else 0.0,
        p99_ms=round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else 0.0,
        service_cpu_us_per_operation=round(1e6 * service_used / max(done, 1), 1),
        service_cpu_us_per_request=round(1e6 * service_used / max(len(latencies), 1), 1),
        service_cpu_percent=round(100 * service_used / elapsed, 1),
        client_cpu_percent=round(100 * client_used / elapsed, 1),
        refused=refused,
    )


def main(argv: list[str] | None = None) -> int:
    """Run both lines, print a Markdown table, write `otlp.json` under `--out`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--spans", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    results: list[Result] = []
    with kafka_broker() as broker:
        for line in ("otlp", "batch"):
            service = Service(
                bootstrap_servers=broker.bootstrap_servers,
                port=free_port(),
                topic=f"bench-otlp-{uuid.uuid4().hex}",
                log_path=args.out / f"otlp-{line}-service.log",
            )
            args.out.mkdir(parents=True, exist_ok=True)
            service.start()
            try:
                # Warm-up: the topic's partitions and the producer's connections.
                measure(service, line, connections=2, seconds=2, spans=args.spans)
                results.append(
                    measure(
                        service,
                        line,
                        connections=args.connections,
                        seconds=args.seconds,
                        spans=args.spans,
                    )
                )
            finally:
                service.stop()
    print(
        "| line | ops/s | p50 ms | p99 ms | service CPU µs/op | service CPU µs/request "
        "| service CPU % | client CPU % | refused |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.line} | {r.operations_per_s:,.0f} | {r.p50_ms} | {r.p99_ms} | "
            f"{r.service_cpu_us_per_operation} | {r.service_cpu_us_per_request:,.0f} | "
            f"{r.service_cpu_percent} | {r.client_cpu_percent} | {r.refused} |"
        )
    (args.out / "otlp.json").write_text(
        json.dumps(
            {
                "connections": args.connections,
                "spans_per_request": args.spans,
                "load_average": os.getloadavg(),
                "lines": [asdict(r) for r in results],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
