"""The library's registry-backed serde (app/kafka/schemas.py, app/kafka/registry.py): the
Confluent wire format, violations naming path and rule, and a producer and a consumer client
against a real broker and a real Schema Registry."""

import subprocess
import sys
from typing import Any

import pytest

from app.embedded.ports import free_port
from app.kafka import (
    JsonSchemaDeserializer,
    JsonSchemaSerializer,
    KafkaConsumerClient,
    KafkaConsumerConfig,
    KafkaProducerClient,
    KafkaProducerConfig,
    RegisteredSchema,
    SchemaContract,
    SchemaIncompatibleError,
    SchemaRegistryClient,
    SchemaRegistryConfig,
    SchemaRegistryUnavailableError,
    SchemaViolationError,
)
from app.kafka.errors import KafkaSerializationError
from app.kafka.schemas import JSON_SCHEMA_DRAFT, frame, schema_id_of, unframe
from app.kafka.serde import decode_value
from tests.helpers.http_standin import recording_server

SCHEMA: dict[str, Any] = {
    "$schema": JSON_SCHEMA_DRAFT,
    "type": "object",
    "properties": {
        "order_id": {"type": "integer", "minimum": 1},
        "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
    },
    "required": ["order_id"],
}


def test_unit_without_a_registry_the_service_loads_no_registry_client() -> None:
    # httpx and jsonschema_rs are ~10 MB of the service's memory: only contracts need them.
    probe = (
        "import sys\n"
        "from app.main import create_app\n"
        "from app.settings import Settings\n"
        "create_app(Settings(_env_file=None))\n"
        "print(sorted(m for m in ('httpx', 'jsonschema_rs') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_unit_frame_and_unframe_the_confluent_wire_format() -> None:
    framed = frame(258, b'{"a":1}')
    assert framed == b"\x00\x00\x00\x01\x02" + b'{"a":1}'
    assert unframe(framed) == (258, b'{"a":1}')
    assert unframe(b'{"a":1}') == (None, b'{"a":1}')  # JSON never starts with a zero byte
    assert schema_id_of(None) is None
    # Decoding JSON (as the default consumer and GET /messages do) looks past the frame.
    assert decode_value(framed, {}, "json") == {"a": 1}
    assert decode_value(framed, {"content-type": b"application/json"}, "auto") == {"a": 1}


def test_unit_violations_name_the_path_and_the_rule() -> None:
    contract = SchemaContract(RegisteredSchema(7, SCHEMA, "orders-value", 3))
    assert contract.violations({"order_id": 5, "items": [{"sku": "a"}]}) == []
    found = {(v.path, v.rule) for v in contract.violations({"order_id": 0, "items": [{}]})}
    assert found == {("/order_id", "minimum"), ("/items/0", "required")}
    with pytest.raises(SchemaViolationError) as raised:
        contract.check({"items": []})
    assert raised.value.violations[0].rule == "required"
    assert "version 3, id 7" in str(raised.value)
    assert contract.encode({"order_id": 2}, "confluent") == frame(7, b'{"order_id":2}')
    assert contract.encode({"order_id": 2}, "json") == b'{"order_id":2}'


@pytest.mark.parametrize(
    "ref", ["{base}/internal-only/latest/meta-data", "other.json", "{base}/x#/definitions/a"]
)
def test_unit_a_schema_with_an_external_ref_is_refused_and_nothing_is_fetched(ref: str) -> None:
    # A schema is the registry's, not ours: a remote $ref would make the service call any
    # address from its network position (SSRF) and wait for it.
    with recording_server() as (base, paths):
        schema = {"properties": {"a": {"$ref": ref.format(base=base)}}}
        registered = RegisteredSchema(schema_id=7, schema=schema, subject="s-value", version=1)
        with pytest.raises(
            KafkaSerializationError, match=r"schema 7 of 's-value' refers to .*: external"
        ):
            SchemaContract(registered)
    assert paths == []


def test_unit_local_refs_are_resolved() -> None:
    schema = {
        "properties": {"a": {"$ref": "#/definitions/n"}},
        "definitions": {"n": {"type": "integer"}},
    }
    contract = SchemaContract(RegisteredSchema(schema_id=1, schema=schema, subject="s", version=1))
    assert contract.violations({"a": 1}) == []
    assert [v.rule for v in contract.violations({"a": "x"})] == ["type"]


async def test_unit_an_unreachable_registry_is_unavailable() -> None:
    client = SchemaRegistryClient(SchemaRegistryConfig(url=f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(SchemaRegistryUnavailableError, match="does not answer"):
            await client.latest("orders-value")
    finally:
        await client.aclose()


async def test_unit_credentials_in_the_registry_url_appear_in_no_message() -> None:
    port = free_port()
    url = f"http://registry-user:S3cretPassw0rd@127.0.0.1:{port}/apis/ccompat/v7"
    client = SchemaRegistryClient(SchemaRegistryConfig(url=url))
    try:
        assert client.url == f"http://127.0.0.1:{port}/apis/ccompat/v7"
        with pytest.raises(SchemaRegistryUnavailableError) as away:
            await client.latest("orders-value")
    finally:
        await client.aclose()
    message = str(away.value)
    assert f"127.0.0.1:{port}" in message
    assert "S3cretPassw0rd" not in message
    assert "registry-user" not in message


async def test_producer_and_consumer_clients_with_the_registry(
    kafka_bootstrap: str, schema_registry_url: str, topic: str
) -> None:
    subject = f"{topic}-value"
    registry = SchemaRegistryClient(SchemaRegistryConfig(url=schema_registry_url))
    try:
        assert await registry.latest(subject) is None
        assert await registry.by_id(987_654) is None
        schema_id = await registry.register(subject, SCHEMA)
        # A breaking next version (a new required field) is refused by the registry.
        breaking = {**SCHEMA, "required": ["order_id", "customer"]}
        breaking["properties"] = {**SCHEMA["properties"], "customer": {"type": "string"}}
        assert not await registry.is_compatible(subject, breaking)
        with pytest.raises(SchemaIncompatibleError):
            await registry.register(subject, breaking)

        serializer = await JsonSchemaSerializer.for_subject(registry, subject)
        producer = KafkaProducerClient(
            config=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap),
            value_serializer=serializer,
        )
        async with producer:
            for order_id in (1, 2):
                await producer.publish(topic, {"order_id": order_id}, key=f"o-{order_id}")
            with pytest.raises(SchemaViolationError, match="/order_id"):
                await producer.publish(topic, {"order_id": "three"}, key="o-3")

        consumer = KafkaConsumerClient(
            config=KafkaConsumerConfig(
                topics=[topic], bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
            ),
            value_deserializer=JsonSchemaDeserializer(registry),
        )
        messages = []
        async with consumer:
            for _ in range(40):
                messages += await consumer.poll(timeout_ms=500)
                if len(messages) >= 2:
                    break
    finally:
        await registry.aclose()
    assert sorted(m.value["order_id"] for m in messages) == [1, 2]
    assert {(m.schema_id, m.schema_version) for m in messages} == {(schema_id, 1)}
