"""Records/s over the last minutes, for the /ui page's chart (GET /ui/status, app/api/ui.py).

The rate comes from the service's own counter of records Kafka acknowledged (the producer's
`delivered`: audit records, spooled ones forwarded, and /publish): `RateHistory` samples it
every `interval_s` in a background task and keeps the last `keep` intervals, so the chart has
history from the start, not from when a page opened.
"""

import asyncio
import collections
import time
from collections.abc import Callable

from app.tasks import BackgroundTask

RATE_INTERVAL_S = 5.0
# Ten minutes of 5-second intervals.
RATE_KEEP = 120


class RateHistory:
    """Records/s of a monotonic counter per interval: `sample()` every `interval_s` (the
    background task, or a test calling it with its own clock), `rates()` oldest first."""

    def __init__(
        self,
        read: Callable[[], int],
        *,
        interval_s: float = RATE_INTERVAL_S,
        keep: int = RATE_KEEP,
    ) -> None:
        self._read = read
        self.interval_s = interval_s
        self._rates: collections.deque[float] = collections.deque(maxlen=keep)
        self._last: tuple[float, int] | None = None
        self._task = BackgroundTask("ui-rate-history", self._run)

    def sample(self, now: float | None = None) -> None:
        """Read the counter; the rate since the previous sample becomes the newest interval."""
        now = time.monotonic() if now is None else now
        count = self._read()
        if self._last is not None:
            then, before = self._last
            elapsed = now - then
            if elapsed > 0:
                # A counter that went back (a new producer) counts from zero again.
                self._rates.append(max(count - before, 0) / elapsed)
        self._last = (now, count)

    def rates(self) -> list[float]:
        """Records/s per interval, oldest first (at most `keep`)."""
        return list(self._rates)

    def start(self) -> None:
        """Sample every `interval_s` in the background."""
        self._task.start()

    async def close(self) -> None:
        """Stop sampling."""
        await self._task.close()

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)
