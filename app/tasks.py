"""The service's background tasks: how one is started and stopped, and how one that keeps
retrying paces itself.

Every long-lived task (the producer's connection, the audit topic's guard, the GET /messages
reader, the spool's forwarder and its removal retries) is a `BackgroundTask`: started by name,
stopped by cancelling it and waiting until it has ended, so that nothing it holds (a consumer, a
database handle) outlives the `close()` that stopped it. Those that reconnect wait with `Backoff`.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

RECANCEL_S = 0.5


class BackgroundTask:
    """A named task running `run()`: `start()` begins it, `close()` cancels it and returns once
    it has ended. It may be started again once it has ended (a retry loop that finished)."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def running(self) -> bool:
        """True from `start()` until the task has ended."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Begin running in the background (the running event loop's); does nothing while the
        task runs already."""
        if not self.running:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=self.name)
            self._task.add_done_callback(self._ended)

    def _ended(self, task: "asyncio.Task[None]") -> None:
        # A task that fails or is cancelled by something other than close() would otherwise
        # end without a trace while the service goes on without it.
        if self._closing:
            return
        if task.cancelled():
            logger.error("background task %s ended: cancelled, not by the service", self.name)
        elif (error := task.exception()) is not None:
            logger.error("background task %s ended: %r", self.name, error, exc_info=error)

    async def wait(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the task to end by itself; the task goes on after a
        timeout (waiting does not cancel it)."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)

    async def close(self) -> None:
        """Cancel the task and wait until it has ended; nothing to do when it never started.
        The cancellation is repeated every `RECANCEL_S` until the task ends: aiokafka's stop()
        swallows a cancellation that reaches it while it awaits its own fetch tasks, and a
        retry loop would then go on for good."""
        task = self._task
        if task is None:
            return
        self._closing = True
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=RECANCEL_S)
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
