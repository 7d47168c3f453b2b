"""`async with` for the clients: start on entry, close on exit."""

import abc
from types import TracebackType
from typing import Self


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
