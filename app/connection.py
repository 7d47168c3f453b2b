"""The connection to the Kafka cluster the settings name: the library's configs for it (one
place maps `RG_KAFKA_*` to every client), and the service's one producer connection.

The producer connects in the background and keeps trying, so the service starts (and `/healthz`
answers) before the broker does; `/readyz` reports the difference.
"""

import asyncio
import inspect
import logging
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from app.kafka import KafkaConsumerConfig, KafkaProducerClient, KafkaProducerConfig
from app.logs import RepeatedFailure
from app.settings import Settings
from app.tasks import BackgroundTask, Backoff

logger = logging.getLogger(__name__)

# How long a readiness verdict is reused (GET /readyz).
READY_CACHE_S = 1.0


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
    """The service's producer: idempotent, acks=all (the library's defaults); batches of up to
    RG_KAFKA_MAX_BATCH_SIZE bytes after RG_KAFKA_LINGER_MS (at once on an idle producer unless
    RG_KAFKA_LINGER_WHEN_IDLE), compressed as
    RG_KAFKA_COMPRESSION_TYPE says."""
    compression = settings.kafka_compression_type
    return KafkaProducerConfig(
        **_connection(settings),
        request_timeout_ms=settings.kafka_request_timeout_ms,
        compression_type=None if compression == "none" else compression,
        max_batch_size=settings.kafka_max_batch_size,
        linger_ms=settings.kafka_linger_ms,
        linger_when_idle=settings.kafka_linger_when_idle,
    )


def consumer_config(settings: Settings, **fields: Any) -> KafkaConsumerConfig:
    """A consumer on the settings' cluster; `fields` sets topics, group_id and the rest."""
    return KafkaConsumerConfig(**_connection(settings), **fields)


def admin_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's admin client: the producer's connection (servers,
    client id, SASL, TLS, request timeout), nothing else."""
    accepted = inspect.signature(AIOKafkaAdminClient).parameters
    return {k: v for k, v in producer_config(settings).to_aiokafka().items() if k in accepted}


class ProducerConnection:
    """Owns the service's `KafkaProducerClient`: connects it in the background, checks it,
    closes it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.producer = KafkaProducerClient(config=producer_config(settings))
        self._connecting = BackgroundTask("kafka-connect", self._connect)
        # When the last readiness verdict was made (time.monotonic()), and what it was.
        self._ready: tuple[float, bool] | None = None
        self._ready_lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """True once the producer has bootstrapped against the cluster."""
        return self.producer.started

    async def start(self) -> None:
        """Begin connecting; returns at once, the connection completes in the background."""
        self._connecting.start()

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the first connection; True when it is there."""
        await self._connecting.wait(timeout_s)
        return self.connected

    async def is_ready(self) -> bool:
        """True when the cluster answers a metadata request (for the audit topic alone) within
        the ready timeout. The verdict is kept for READY_CACHE_S and concurrent callers share
        one request: /readyz is open to anyone, and must not turn into a request to the
        cluster per call."""
        async with self._ready_lock:
            now = time.monotonic()
            if self._ready is None or now - self._ready[0] >= READY_CACHE_S:
                answered = await self.producer.ping(
                    timeout_s=self._settings.ready_timeout_s, topic=self._settings.audit_topic
                )
                self._ready = (time.monotonic(), answered)
            return self._ready[1]

    async def close(self) -> None:
        """Stop connecting, flush what was sent and close the producer."""
        await self._connecting.close()
        await self.producer.close()

    async def _connect(self) -> None:
        backoff = Backoff()
        failures = RepeatedFailure()
        servers = ",".join(self._settings.kafka_bootstrap_servers)
        while True:
            try:
                await self.producer.start_uninterrupted()
            except Exception as exc:  # keep trying, whatever the reason
                left_out = failures.due()
                if left_out is not None:
                    logger.warning(
                        "Kafka at %s not reachable yet (%s); retrying in %.1fs%s",
                        servers,
                        exc,
                        backoff.delay_s,
                        f" ({left_out} more failed attempts since the last line)"
                        if left_out
                        else "",
                    )
                await backoff.wait()
            else:
                logger.info("connected to Kafka at %s", servers)
                return
