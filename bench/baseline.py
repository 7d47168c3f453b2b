"""The ceiling: a bare `AIOKafkaProducer` in this process, no HTTP and no validation, sending
the service's record with the same concurrency and the same acknowledgement (acks=all)."""

import asyncio
import dataclasses
import time
from typing import Any

import uvloop
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from app.kafka import KafkaProducerConfig
from bench.procfs import CpuProbe
from bench.stats import Measurement, from_latencies
from bench.workload import KafkaRecord

# The service runs on uvloop (uvicorn[standard] installs it and picks it); the baseline
# does too, so the event loop is not part of the difference.
EVENT_LOOP = "uvloop"


def producer_options(bootstrap_servers: str) -> dict[str, Any]:
    """Idempotent, acks=all, and the batching (linger) and compression the service's producer
    uses, so the gap to the HTTP scenarios is the service itself, not a different producer."""
    service = KafkaProducerConfig()
    return {
        "bootstrap_servers": bootstrap_servers,
        "client_id": "rg-bench-baseline",
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": service.linger_ms,
        "compression_type": service.compression_type,
    }


async def _drive(
    producer: Any, topic: str, record: KafkaRecord, *, concurrency: int, duration_s: float
) -> tuple[list[int], dict[str, int], float]:
    """`concurrency` tasks send and wait in a loop until the deadline; returns each call's
    latency in ns, the errors by type, and the wall time until the last call finished."""
    latencies: list[int] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    deadline = started + duration_s

    async def sender() -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter_ns()
            try:
                await producer.send_and_wait(
                    topic, record.value, key=record.key, headers=record.headers
                )
            except KafkaError as exc:
                name = type(exc).__name__
                errors[name] = errors.get(name, 0) + 1
            else:
                latencies.append(time.perf_counter_ns() - sent)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(sender())
    return latencies, errors, time.perf_counter() - started


async def _measure(
    bootstrap_servers: str,
    topic: str,
    record: KafkaRecord,
    *,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    cpu: CpuProbe,
) -> Measurement:
    producer = AIOKafkaProducer(**producer_options(bootstrap_servers))
    await producer.start()
    try:
        # The warm-up creates the topic and fills the connection and batch pipelines.
        await _drive(producer, topic, record, concurrency=concurrency, duration_s=warmup_s)
        cpu.start()
        latencies, errors, elapsed = await _drive(
            producer, topic, record, concurrency=concurrency, duration_s=duration_s
        )
        cpu_percent = cpu.stop()
    finally:
        await producer.stop()
    measured = from_latencies("aiokafka", "raw aiokafka send_and_wait", latencies, elapsed, errors)
    return dataclasses.replace(measured, cpu_percent=cpu_percent, cpu_s=cpu.used_s)


def run(
    bootstrap_servers: str,
    topic: str,
    record: KafkaRecord,
    *,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    cpu: CpuProbe,
) -> Measurement:
    """Measure the bare producer on the same kind of event loop as the service; `cpu` is
    read over the measured window only."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(
            _measure(
                bootstrap_servers,
                topic,
                record,
                concurrency=concurrency,
                warmup_s=warmup_s,
                duration_s=duration_s,
                cpu=cpu,
            )
        )
