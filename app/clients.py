"""Library configs built from the service settings: one place maps `RG_KAFKA_*` to the clients."""

import inspect
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from app.kafka import KafkaConsumerConfig, KafkaProducerConfig
from app.settings import Settings


def _connection(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password,
        "ssl_cafile": settings.kafka_ssl_cafile,
        "ssl_certfile": settings.kafka_ssl_certfile,
        "ssl_keyfile": settings.kafka_ssl_keyfile,
    }


def producer_config(settings: Settings) -> KafkaProducerConfig:
    """The service's producer: idempotent, acks=all (the library's defaults); batches compressed
    as RG_KAFKA_COMPRESSION_TYPE says."""
    compression = settings.kafka_compression_type
    return KafkaProducerConfig(
        **_connection(settings),
        request_timeout_ms=settings.kafka_request_timeout_ms,
        compression_type=None if compression == "none" else compression,
    )


def consumer_config(settings: Settings, **fields: Any) -> KafkaConsumerConfig:
    """A consumer on the settings' cluster; `fields` sets topics, group_id and the rest."""
    return KafkaConsumerConfig(**_connection(settings), **fields)


def admin_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's admin client: the producer's connection (servers,
    client id, SASL, TLS, request timeout), nothing else."""
    accepted = inspect.signature(AIOKafkaAdminClient).parameters
    return {k: v for k, v in producer_config(settings).to_aiokafka().items() if k in accepted}
