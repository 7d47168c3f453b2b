"""The service's one Kafka producer and whether the broker answers it.

The producer connects in the background and keeps trying, so the service starts (and `/healthz`
answers) before the broker does; `/readyz` reports the difference.
"""

import asyncio
import contextlib
import logging

from app.backoff import Backoff
from app.clients import producer_config
from app.kafka import KafkaProducerClient
from app.settings import Settings

logger = logging.getLogger(__name__)


class ProducerConnection:
    """Owns the service's `KafkaProducerClient`: connects it in the background, checks it,
    closes it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.producer = KafkaProducerClient(config=producer_config(settings))
        self._connect_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """True once the producer has bootstrapped against the cluster."""
        return self.producer.started

    async def start(self) -> None:
        """Begin connecting; returns at once, the connection completes in the background."""
        self._connect_task = asyncio.create_task(self._connect(), name="kafka-connect")

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the first connection; True when it is there."""
        if self._connect_task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._connect_task), timeout_s)
        return self.connected

    async def is_ready(self) -> bool:
        """True when the cluster answers a metadata request within the ready timeout."""
        return await self.producer.ping(timeout_s=self._settings.ready_timeout_s)

    async def close(self) -> None:
        """Stop connecting, flush what was sent and close the producer."""
        if self._connect_task is not None:
            self._connect_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connect_task
        await self.producer.close()

    async def _connect(self) -> None:
        backoff = Backoff()
        servers = ",".join(self._settings.kafka_bootstrap_servers)
        while True:
            try:
                await self.producer.start_uninterrupted()
            except Exception as exc:  # keep trying, whatever the reason
                logger.warning(
                    "Kafka at %s not reachable yet (%s); retrying in %.1fs",
                    servers,
                    exc,
                    backoff.delay_s,
                )
                await backoff.wait()
            else:
                logger.info("connected to Kafka at %s", servers)
                return
