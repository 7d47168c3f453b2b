"""The figure for the note: the served process's CPU per POST /publish with a JSON Schema on
the topic (validated, framed) against no registry at all. Printed (`pytest -s`), not asserted."""

import uuid
from pathlib import Path

import httpx

from bench.procfs import cpu_seconds
from tests.helpers.service import LiveService, running_service
from tests.ingest.test_contracts import ORDER_SCHEMA, register

WARMUP = 100
REQUESTS = 600


def cpu_per_publish_us(service: LiveService, topic: str) -> float:
    """Service CPU per acknowledged /publish over a one-connection loop, in microseconds."""
    body = {
        "topic": topic,
        "key": "order-1",
        "value": {"order_id": 981, "status": "paid"},
        "headers": {"source": "checkout"},
    }
    with httpx.Client(base_url=service.url, timeout=30) as client:
        for _ in range(WARMUP):
            assert client.post("/publish", json=body).status_code == 201
        before = cpu_seconds(service.process.pid)
        for _ in range(REQUESTS):
            assert client.post("/publish", json=body).status_code == 201
        used = cpu_seconds(service.process.pid) - before
    return used / REQUESTS * 1e6


def test_cpu_per_publish_with_validation_on_and_off(
    kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path
) -> None:
    topic = f"orders-{uuid.uuid4().hex}"
    register(schema_registry_url, f"{topic}-value", ORDER_SCHEMA)
    figures = {}
    for name, settings in (
        ("off (no registry)", {}),
        ("on (json)", {"schema_registry_url": schema_registry_url}),
        (
            "on (confluent)",
            {"schema_registry_url": schema_registry_url, "schema_wire_format": "confluent"},
        ),
    ):
        with running_service(kafka_bootstrap, tmp_path / name.split()[0], **settings) as service:
            figures[name] = cpu_per_publish_us(service, topic)
    print()
    for name, figure in figures.items():
        print(f"service CPU per POST /publish, validation {name}: {figure:,.0f} us")
