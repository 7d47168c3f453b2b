"""The OTLP bench's code path on the session broker, briefly: both lines write every operation
they count exactly once (no timing is asserted: speed is what the bench measures)."""

import asyncio
import uuid
from pathlib import Path

import pytest

from app.embedded import free_port
from bench import otlp
from bench.service import Service
from tests.helpers.kafka import records_in

pytestmark = pytest.mark.broker


async def test_both_lines_write_each_operation_they_count_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    for line in ("otlp", "batch"):
        topic = f"test-{uuid.uuid4().hex}"
        service = Service(
            bootstrap_servers=kafka_bootstrap,
            port=free_port(),
            topic=topic,
            log_path=tmp_path / f"{line}.log",
        )
        await asyncio.to_thread(service.start)
        try:
            # measure() runs its own event loop: in a thread of its own.
            result = await asyncio.to_thread(
                otlp.measure, service, line, connections=2, seconds=1, spans=5
            )
        finally:
            await asyncio.to_thread(service.stop)
        assert result.refused == 0
        assert result.operations > 0
        assert result.service_cpu_us_per_operation > 0
        assert result.service_cpu_us_per_request >= result.service_cpu_us_per_operation
        assert await records_in(kafka_bootstrap, topic) == result.operations
