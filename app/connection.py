"""The service's one Kafka producer and whether the broker answers it.

The producer connects in the background and keeps trying, so the service starts (and `/healthz`
answers) before the broker does; `/readyz` reports the difference.
"""

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from app.settings import Settings

logger = logging.getLogger(__name__)

_RETRY_INITIAL_S = 0.5
_RETRY_MAX_S = 5.0


def producer_options(settings: Settings) -> dict[str, Any]:
    """aiokafka producer arguments from the service settings."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
        "security_protocol": settings.kafka_security_protocol,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        # Idempotence implies acks="all": an accepted record survives a leader change and a
        # retried batch is never written twice.
        "enable_idempotence": True,
        "acks": "all",
    }
    if settings.kafka_sasl_mechanism is not None:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    return options


class ProducerConnection:
    """Owns the aiokafka producer: connects it in the background, checks it, closes it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._connected = asyncio.Event()
        self._connect_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """True once the producer has bootstrapped against the cluster."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Begin connecting; returns at once, the connection completes in the background."""
        self._producer = AIOKafkaProducer(**producer_options(self._settings))
        self._connect_task = asyncio.create_task(
            self._connect(self._producer), name="kafka-connect"
        )

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the first connection; True when it is there."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        return self.connected

    async def is_ready(self) -> bool:
        """Ask the cluster for its metadata: True when a broker answers within the ready timeout."""
        if self._producer is None or not self.connected:
            return False
        try:
            await asyncio.wait_for(
                self._producer.client.fetch_all_metadata(), self._settings.ready_timeout_s
            )
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Stop connecting, flush what was sent and close the producer."""
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        self._connected.clear()

    async def _connect(self, producer: AIOKafkaProducer) -> None:
        delay = _RETRY_INITIAL_S
        servers = ",".join(self._settings.kafka_bootstrap_servers)
        while True:
            try:
                await producer.start()
            except Exception as exc:
                logger.warning(
                    "Kafka at %s not reachable yet (%s); retrying in %.1fs", servers, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
            else:
                self._connected.set()
                logger.info("connected to Kafka at %s", servers)
                return
