"""The figure for the note: the served process's CPU per POST /publish to a topic with a JSON
Schema (looked up from the cache, validated, framed) against one without, in the same process
and in alternating rounds, so that both see the same machine. Printed (`pytest -s`), not
asserted."""

import uuid
from pathlib import Path

import httpx

from bench.procfs import cpu_seconds
from tests.helpers.service import running_service
from tests.ingest.test_contracts import ORDER_SCHEMA, register

WARMUP = 100
ROUNDS = 4
PER_ROUND = 200


def test_cpu_per_publish_with_validation_on_and_off(
    kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path
) -> None:
    checked = f"orders-{uuid.uuid4().hex}"
    unchecked = f"plain-{uuid.uuid4().hex}"
    register(schema_registry_url, f"{checked}-value", ORDER_SCHEMA)
    used = {checked: 0.0, unchecked: 0.0}
    with (
        running_service(
            kafka_bootstrap,
            tmp_path,
            schema_registry_url=schema_registry_url,
            schema_wire_format="confluent",
            publish_topics="orders-*,plain-*",
        ) as service,
        httpx.Client(base_url=service.url, timeout=30) as client,
    ):

        def publish(topic: str, count: int) -> None:
            body = {
                "topic": topic,
                "key": "order-1",
                "value": {"order_id": 981, "status": "paid"},
                "headers": {"source": "checkout"},
            }
            for _ in range(count):
                answer = client.post("/publish", json=body)
                assert answer.status_code == 201, answer.text

        for topic in used:
            publish(topic, WARMUP)
        for _ in range(ROUNDS):
            for topic in used:
                before = cpu_seconds(service.process.pid)
                publish(topic, PER_ROUND)
                used[topic] += cpu_seconds(service.process.pid) - before
    count = ROUNDS * PER_ROUND
    on, off = used[checked] / count * 1e6, used[unchecked] / count * 1e6
    print()
    print(f"service CPU per POST /publish, {count} each, one connection, confluent framing:")
    print(f"  validation on  (topic with a schema):  {on:,.0f} us")
    print(f"  validation off (topic without schema): {off:,.0f} us  (difference {on - off:+,.0f})")
