"""`async with` for the clients: start on entry, close on exit."""

import abc
import asyncio
import contextlib
from types import TracebackType
from typing import Self


def cancelling() -> bool:
    """True when the running task has been asked to stop (a `CancelledError` seen now is
    meant for it, not a stray one from a task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class AsyncLifecycle(abc.ABC):
    """A client that is started before use and closed after it."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect; raises when the cluster cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; safe to call more than once."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start_uninterrupted(self, *, grace_s: float = 2.0) -> None:
        """`start()`, letting it finish (for up to `grace_s`) even when the caller is cancelled
        meanwhile, then closing the client and re-raising the cancellation.

        aiokafka leaks the socket of a bootstrap interrupted halfway (it is not yet registered
        with the client, so `close()` cannot see it); background tasks that connect and may be
        cancelled at shutdown use this instead of `start()`.
        """
        starting = asyncio.ensure_future(self.start())
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(starting, grace_s)
            await self.close()
            raise
