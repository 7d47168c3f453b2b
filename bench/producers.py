"""The service's producer settings, for the raw lines: the bench reads them from
`app.connection.producer_config` (what `serve` builds from the same RG_* environment), so a change
of the service's producer moves its raw lines with it.

aiokafka takes them as they are; librdkafka and the JVM client take the same settings under
Kafka's own property names (`acks`, `enable.idempotence`, `linger.ms`, `batch.size`, ...).
"""

import inspect
from typing import Any

from aiokafka import AIOKafkaProducer

from app.connection import producer_config
from app.settings import Settings

RAW_CLIENT_ID = "rg-bench-raw"


def aiokafka_options(bootstrap_servers: str) -> dict[str, Any]:
    """`AIOKafkaProducer` keyword arguments: the service's producer, another client id."""
    config = producer_config(Settings(kafka_bootstrap_servers=bootstrap_servers.split(",")))
    return {**config.to_aiokafka(), "client_id": RAW_CLIENT_ID}


def _aiokafka_default(name: str) -> Any:
    return inspect.signature(AIOKafkaProducer).parameters[name].default


def kafka_properties(bootstrap_servers: str) -> dict[str, str]:
    """The same producer as Kafka properties, for confluent-kafka and ProducerPerformance.

    Only the settings that shape the produce path are carried over; the bench's broker is a
    plaintext one (the embedded broker, or RG_KAFKA_BOOTSTRAP_SERVERS without TLS or SASL).
    """
    options = aiokafka_options(bootstrap_servers)
    protocol = options.get("security_protocol", "PLAINTEXT")
    if protocol != "PLAINTEXT":
        raise SystemExit(
            f"the librdkafka and JVM lines speak PLAINTEXT only, not {protocol}: "
            "run the bench against a plaintext listener"
        )
    servers = options["bootstrap_servers"]
    compression = options.get("compression_type")
    batch_size = options.get("max_batch_size", _aiokafka_default("max_batch_size"))
    return {
        "bootstrap.servers": servers if isinstance(servers, str) else ",".join(servers),
        "client.id": RAW_CLIENT_ID,
        "acks": str(options["acks"]),
        "enable.idempotence": str(options["enable_idempotence"]).lower(),
        "linger.ms": str(options["linger_ms"]),
        "compression.type": compression or "none",
        # aiokafka's max_batch_size is the bytes of one partition's batch: Kafka's batch.size.
        "batch.size": str(batch_size),
        "request.timeout.ms": str(options["request_timeout_ms"]),
    }


def described(options: dict[str, Any]) -> dict[str, Any]:
    """Options as results.json records them: plain values only (no SSL context objects)."""
    return {
        key: value
        for key, value in options.items()
        if value is None or isinstance(value, str | int | float | bool | list)
    }
