"""Receipts of recently acknowledged audit events, so a retry writes nothing new.

A client that did not see its answer (a timeout, a dropped connection) sends the same event
again; within the window it gets the first receipt back, and a retry racing the original waits
for it instead of writing a second record.
"""

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Receipt = TypeVar("Receipt")


class RecentReceipts(Generic[Receipt]):
    """Acknowledged receipts by idempotency key, kept `window_s` seconds and at most
    `max_entries` (the oldest go first), so memory stays bounded whatever clients send."""

    def __init__(
        self,
        *,
        window_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._clock = clock
        self._done: collections.OrderedDict[str, tuple[float, Receipt]] = collections.OrderedDict()
        self._in_flight: dict[str, asyncio.Future[Receipt]] = {}

    def __len__(self) -> int:
        return len(self._done)

    async def once(
        self,
        key: str,
        produce: Callable[[], Awaitable[Receipt]],
        *,
        keep: Callable[[Receipt], bool] = lambda _: True,
    ) -> tuple[Receipt, bool]:
        """`(receipt, replayed)`: the receipt kept for `key`, or the one of an identical request
        in flight, or else `produce()`'s, kept when `keep(receipt)` says so (e.g. acked only).
        A failure is not kept: the next attempt produces again."""
        self._expire()
        if (kept := self._done.get(key)) is not None:
            return kept[1], True
        if (pending := self._in_flight.get(key)) is not None:
            try:
                return await asyncio.shield(pending), True
            except Exception:  # noqa: S110 - the first attempt failed: make our own below
                pass
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # it is this request that is being cancelled
        return await self._produce(key, produce, keep), False

    async def _produce(
        self,
        key: str,
        produce: Callable[[], Awaitable[Receipt]],
        keep: Callable[[Receipt], bool],
    ) -> Receipt:
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            receipt = await produce()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            if self._in_flight.get(key) is future:
                del self._in_flight[key]
        future.set_result(receipt)
        if keep(receipt):
            self.remember(key, receipt)
        return receipt

    def remember(self, key: str, receipt: Receipt) -> None:
        """Keep `receipt` for `key` (e.g. a record acknowledged after its client gave up)."""
        self._done[key] = (self._clock() + self._window_s, receipt)
        self._done.move_to_end(key)
        while len(self._done) > self._max_entries:
            self._done.popitem(last=False)

    def _expire(self) -> None:
        now = self._clock()
        while self._done:
            key, (expires, _) = next(iter(self._done.items()))
            if expires > now:
                return
            del self._done[key]
