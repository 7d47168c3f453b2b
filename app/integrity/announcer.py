"""Writes this writer's entries to the log of writers (app/integrity/writers.py).

`start` once, before the writer's first checkpoint (the checkpointer awaits `started()` before
it writes one); then, every RG_AUDIT_WRITERS_S, a `head` when the chain's durable head advanced
since the last entry; at shutdown, after the last checkpoint, a `stop` with the final head.
Entries go keyed by the writer id with the service's producer (acks=all), as checkpoints do. A
failed write is logged and tried again at the next tick (a start not written yet is tried again
before anything else): the log says what the writer stated, in the order it reached Kafka.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

from app.integrity.checkpoint import rfc3339, writer_log
from app.integrity.writers import WriterEntry
from app.logs import RepeatedFailure
from app.tasks import BackgroundTask

logger = logging.getLogger(__name__)

# Writes one entry (key: the writer id) and returns once it is acknowledged.
WriteRecord = Callable[[str, bytes], Awaitable[None]]


class _Head(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def tree(self) -> bytes: ...


class ChainSource(Protocol):
    """What the announcer reads of the writer's chain (app/integrity/chain.py's ChainWriter)."""

    @property
    def writer_id(self) -> str: ...

    def durable(self) -> _Head | None: ...


class WritersAnnouncer:
    """Writes `chain`'s start, heads and stop to the log of writers (`write`: key, value)."""

    def __init__(
        self, chain: ChainSource, write: WriteRecord, *, origin: str, interval_s: float
    ) -> None:
        self._chain = chain
        self._write = write
        self._origin = origin
        self._interval_s = interval_s
        self._lock = asyncio.Lock()
        self._task = BackgroundTask("writers-log", self._run)
        self._started = False
        self.size = 0  # the size of the last head written
        self.written = 0
        self._failures = RepeatedFailure()

    def start(self) -> None:
        """Write the start entry and then heads in the background."""
        self._task.start()

    async def started(self) -> None:
        """Write the start entry unless it was; raises what the write raised."""
        async with self._lock:
            if not self._started:
                await self._entry(
                    WriterEntry(
                        "start",
                        self._chain.writer_id,
                        _now(),
                        origin=writer_log(self._origin, self._chain.writer_id),
                    )
                )
                self._started = True

    async def head(self, kind: str = "head") -> WriterEntry | None:
        """Write a `head` (or `stop`) entry when the durable head advanced (a stop always,
        once started); returns it, or None when nothing was new."""
        await self.started()
        async with self._lock:
            head = self._chain.durable()
            size = 0 if head is None else head.seq + 1
            if kind == "head" and size <= self.size:
                return None
            root = b"" if head is None else head.tree
            entry = WriterEntry(
                kind,
                self._chain.writer_id,
                _now(),
                size=size,
                # An empty tree's root: SHA-256 of nothing (RFC 6962).
                root=root.hex() if root else _EMPTY_ROOT,
            )
            await self._entry(entry)
            self.size = size
            return entry

    async def close(self) -> None:
        """Stop the timer and write the stop entry; call after the last checkpoint."""
        await self._task.close()
        try:
            await self.head("stop")
        except Exception as exc:  # the broker away at shutdown: the log says so
            logger.error(
                "stop of writer %s not written to the log of writers: %s",
                self._chain.writer_id,
                exc,
            )

    async def _entry(self, entry: WriterEntry) -> None:
        await self._write(entry.writer, entry.to_bytes())
        self.written += 1

    async def _run(self) -> None:
        while True:
            try:
                await self.started()
                await self.head()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka away: the next tick tries again
                left_out = self._failures.due()
                if left_out is not None:
                    logger.warning(
                        "log of writers: entry of writer %s not written, retrying every %.1fs: "
                        "%s%s",
                        self._chain.writer_id,
                        self._interval_s,
                        exc,
                        f" ({left_out} more failed attempts since the last line)"
                        if left_out
                        else "",
                    )
            else:
                self._failures.reset()
            await asyncio.sleep(self._interval_s)


_EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _now() -> str:
    return rfc3339(datetime.now(UTC))
