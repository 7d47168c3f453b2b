"""Exponential backoff for the background tasks that keep reconnecting to Kafka."""

import asyncio


class Backoff:
    """Waits `initial_s`, then twice as long each time, up to `max_s`; `reset()` after a
    success starts again from `initial_s`."""

    def __init__(self, *, initial_s: float = 0.5, max_s: float = 5.0) -> None:
        self._initial_s = initial_s
        self._max_s = max_s
        self.delay_s = initial_s

    def reset(self) -> None:
        """Back to the shortest wait."""
        self.delay_s = self._initial_s

    async def wait(self) -> None:
        """Sleep the current delay, then lengthen it."""
        await asyncio.sleep(self.delay_s)
        self.delay_s = min(self.delay_s * 2, self._max_s)
