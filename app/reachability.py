"""Whether Kafka answers, said once in the log: one line when it goes away, one when it is back.

While the broker is away every client retries on its own (the producer, the GET /messages reader,
the checkpointer, the spool's forwarder), and the client library's lines about it are kept few
(app/logs.py). `KafkaReachability` asks the cluster for its metadata every `every_s` once the
producer has connected and logs the changes: `Kafka unreachable since <time>` (WARNING) and
`Kafka back after <n> s` (INFO).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from app.tasks import BackgroundTask

logger = logging.getLogger(__name__)

EVERY_S = 2.0


class KafkaReachability:
    """Pings the cluster in the background (`ping()`: True when it answered) while
    `connected()` (the producer has bootstrapped); `unreachable_since` is the wall-clock time
    the first failed ping was sent, None while Kafka answers."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[bool]],
        *,
        connected: Callable[[], bool],
        servers: str,
        every_s: float = EVERY_S,
    ) -> None:
        self._ping = ping
        self._connected = connected
        self._servers = servers
        self._every_s = every_s
        self._task = BackgroundTask("kafka-reachability", self._run)
        self.unreachable_since: datetime | None = None
        self._lost_at = 0.0

    def start(self) -> None:
        """Begin watching in the background."""
        self._task.start()

    async def close(self) -> None:
        """Stop watching."""
        await self._task.close()

    async def check(self) -> None:
        """Ping once and log a change (the background task calls it every `every_s`)."""
        if not self._connected():
            return  # the producer's connection logs its own attempts until the first succeeds
        started = time.monotonic()
        wall = datetime.now(UTC)
        answered = await self._ping()
        if not answered and self.unreachable_since is None:
            self.unreachable_since, self._lost_at = wall, started
            logger.warning(
                "Kafka unreachable since %s (%s): writes answer 503 or spool, GET /messages, "
                "checkpoints and the spool's forwarder wait for it; the client retries quietly",
                wall.isoformat(timespec="seconds"),
                self._servers,
            )
        elif answered and self.unreachable_since is not None:
            logger.info(
                "Kafka back after %.0f s (unreachable since %s)",
                time.monotonic() - self._lost_at,
                self.unreachable_since.isoformat(timespec="seconds"),
            )
            self.unreachable_since = None

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._every_s)
