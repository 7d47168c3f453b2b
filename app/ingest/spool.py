"""The disk spool (`RG_SPOOL_DIR`): audit records kept on local disk while Kafka is away.

`Spool` is the asynchronous front the audit trail and the forwarder use; the records live in a
`SpoolStore` (`app.ingest.spool_store`: SQLite, its on-disk format and invariants), which runs
on one thread of its own, so the event loop never waits on the disk.

- `append()` returns once the record is committed, synced to disk: a 202 "spooled" answer
  survives a crash of the service or of the machine. Appends that arrive together share one
  transaction and one fsync (group commit): while a round of work is on the store's thread,
  what is queued meanwhile waits and goes as the next round, so a burst costs a handful of
  syncs, not one per request.
- The counts (`depth`, `size_bytes`, `oldest_age_s()`) are exact at once: appends count from the
  moment they are accepted (and are taken back if the write fails), removals once committed.
- `watch()` ties a record to a delivery under way: once Kafka acknowledges it the record is
  removed (even during shutdown, while the producer flushes); when it fails the record is read
  again without it, to be sent anew. `read()` gives the oldest records with the delivery each
  still waits for, so the forwarder never sends a record twice at once.
- an append the disk cannot take (full, or failing; the store keeps RG_SPOOL_MIN_FREE_BYTES
  free) fails as a whole and raises `SpoolUnavailableError` (503 `spool_unavailable`): the
  record was not accepted, nothing is lost, the client retries. One past RG_SPOOL_MAX_BYTES
  raises `SpoolFullError` before anything is written. SQLite's own error is logged, once per
  run of failures (and once more when writing works again).
- a removal that cannot be written is not forgotten: the record stays on disk but is marked
  acknowledged in memory, so `read()` never hands it out again, and the removal is retried with
  backoff until it commits. The forwarder reads nothing new while removals are pending
  (`wait_removed()`), so at most one batch waits on the disk. In a round, removals commit in a
  transaction of their own, before the appends queued with them, so a failing append never
  holds one back. Should the service stop while removals still cannot be written, those
  records are on disk without the mark and are sent again at the next start (logged as an
  error; consumers drop repeats by `rg-event-id`).
"""

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import SpoolFullError, SpoolUnavailableError
from app.ingest.spool_store import (
    Removed,
    SpooledRecord,
    SpoolError,
    SpoolStore,
    free_bytes,
    size_of,
)
from app.kafka import AuditRecord, KafkaProduceResult, outcome_of
from app.tasks import BackgroundTask, Backoff

# SpoolError and SpooledRecord are the store's, part of the spool's surface too.
__all__ = ["Spool", "SpoolError", "SpooledRecord"]

logger = logging.getLogger(__name__)


@dataclass
class _Remove:
    seqs: list[int]


@dataclass
class _Read:
    limit: int


# An append is the SpooledRecord to write (its delivery stays in memory).
_Op = SpooledRecord | _Remove | _Read


class Spool:
    """A durable, size-bounded, ordered log of audit records on local disk.

    `append()` returns once the record is synced to disk (or raises `SpoolFullError` when it
    would pass `max_bytes`); `read()` gives the oldest records in order; `remove()` drops
    records Kafka acknowledged. `depth`, `size_bytes` and `oldest_age_s()` are exact at once
    (appends count from the moment they are accepted).
    """

    def __init__(self, directory: Path, *, max_bytes: int, min_free_bytes: int = 0) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        self._store = SpoolStore(self.directory, min_free_bytes=min_free_bytes)
        # The store's one thread: every call into it runs there, in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._next_seq = 1
        self._depth = 0
        self._bytes = 0
        self._oldest: float | None = None
        self._ops: list[tuple[_Op, asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._deliveries: dict[int, asyncio.Future[KafkaProduceResult]] = {}
        self._not_empty = asyncio.Event()
        # Records Kafka acknowledged whose removal is not committed yet: never read again.
        self._unremoved: set[int] = set()
        self._removed = asyncio.Event()
        self._removed.set()
        self._removal_retry = BackgroundTask("spool-removal-retry", self._retry_removals)
        # Failed writes in the current run of failures, by kind (logged once per run).
        self._failing: dict[str, int] = {}

    @property
    def depth(self) -> int:
        """Records in the spool (those being appended included)."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        """Bytes of the records in the spool (keys, values and headers)."""
        return self._bytes

    def oldest_age_s(self, now: Callable[[], float] = time.time) -> float:
        """Seconds since the oldest record still in the spool was appended; 0 when empty."""
        return max(0.0, now() - self._oldest) if self._oldest is not None and self._depth else 0.0

    async def open(self) -> None:
        """Create or reopen the spool in `directory`; records left by an earlier run are kept
        and will be read first."""
        contents = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._store.open
        )
        self._depth, self._bytes, self._next_seq = contents.count, contents.size, contents.next_seq
        self._oldest = contents.oldest
        room = free_bytes(self.directory) + self._bytes - self.min_free_bytes
        if room < self.max_bytes:
            logger.warning(
                "the disk under spool %s has room for %d bytes of records (free space less "
                "RG_SPOOL_MIN_FREE_BYTES), less than RG_SPOOL_MAX_BYTES=%d: the disk will refuse "
                "records before the spool's own bound does",
                self.directory,
                max(room, 0),
                self.max_bytes,
            )
        if self._depth:
            self._not_empty.set()
            logger.warning(
                "spool %s holds %d record(s) (%d bytes) from an earlier run; forwarding them",
                self.directory,
                self._depth,
                self._bytes,
            )

    async def append(
        self,
        record: AuditRecord,
        *,
        event_id: str,
        delivery: "asyncio.Future[KafkaProduceResult] | None" = None,
    ) -> SpooledRecord:
        """Append `record` and return once it is on disk. `delivery` is an earlier attempt
        still under way: the forwarder waits for it instead of sending the record again.
        Raises `SpoolFullError` when the record does not fit in `max_bytes`, and
        `SpoolUnavailableError` when the disk cannot take it."""
        size = size_of(record)
        if self._bytes + size > self.max_bytes:
            raise SpoolFullError(
                f"the spool holds {self._bytes} of {self.max_bytes} bytes and cannot take this "
                "record until Kafka is back"
            )
        op = SpooledRecord(self._next_seq, record, event_id, time.time(), size, delivery)
        self._next_seq += 1
        if not self._depth:
            self._oldest = op.created_at
        self._depth += 1
        self._bytes += size
        if delivery is not None:
            self.watch(op.seq, delivery)
        self._not_empty.set()
        written = self._enqueue(op)
        try:
            # Shielded: a caller that goes away (a client disconnecting) does not stop the
            # write, and the counters stay true to what is on disk.
            await asyncio.shield(written)
        except Exception:  # not on cancellation: the write still happens
            self._depth -= 1
            self._bytes -= size
            self._deliveries.pop(op.seq, None)
            if not self._depth:
                self._not_empty.clear()
            raise
        return op

    def watch(self, seq: int, delivery: "asyncio.Future[KafkaProduceResult]") -> None:
        """Tie record `seq` to a delivery under way: once Kafka acknowledges it the record is
        removed (even during shutdown, while the producer flushes); when it fails the record
        is read without it again, to be sent anew."""
        self._deliveries[seq] = delivery

        def settled(done: "asyncio.Future[KafkaProduceResult]") -> None:
            if outcome_of(done)[1] is None:
                self.remove([seq])
            elif self._deliveries.get(seq) is done:
                del self._deliveries[seq]

        delivery.add_done_callback(settled)

    async def read(self, limit: int) -> list[SpooledRecord]:
        """The oldest `limit` records, in the order they were appended, without those Kafka
        acknowledged already (their removal may still be on its way to disk)."""
        rows: list[SpooledRecord] = await self._enqueue(_Read(limit))
        return [
            dataclasses.replace(r, delivery=self._deliveries.get(r.seq))
            for r in rows
            if r.seq not in self._unremoved
        ]

    def remove(self, seqs: Iterable[int]) -> "asyncio.Future[None]":
        """Drop records (those Kafka acknowledged); unknown ones are ignored. From now on they
        are never read again, even if the removal cannot be written yet (then it is retried).
        Await the result to know it is committed; from a callback, leave it: `close()`
        completes it."""
        wanted = list(seqs)
        for seq in wanted:
            self._deliveries.pop(seq, None)
        self._unremoved.update(wanted)
        if self._unremoved:
            self._removed.clear()
        return self._enqueue(_Remove(wanted))

    async def wait_removed(self) -> None:
        """Return once every acknowledged record's removal is committed."""
        await self._removed.wait()

    async def wait_not_empty(self) -> None:
        """Return once the spool holds a record."""
        await self._not_empty.wait()

    async def close(self) -> None:
        """Finish queued work, then close the database; the records stay for the next run."""
        await self._removal_retry.close()
        if self._unremoved:
            # One last try; what still fails is read again by the next run.
            with contextlib.suppress(SpoolUnavailableError):
                await self._enqueue(_Remove(sorted(self._unremoved)))
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)
        if self._unremoved:
            logger.error(
                "spool %s: %d record(s) Kafka acknowledged could not be removed from the "
                "spool; the next start sends them again (consumers can drop repeats by "
                "rg-event-id)",
                self.directory,
                len(self._unremoved),
            )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._store.close)
        self._executor.shutdown(wait=True)

    def _enqueue(self, op: _Op) -> "asyncio.Future[Any]":
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._ops.append((op, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="spool-writer")
        return future

    async def _write(self) -> None:
        # Everything queued while the previous transaction was on its way to disk goes into
        # the next one: one fsync for all of it.
        loop = asyncio.get_running_loop()
        while self._ops:
            batch, self._ops = self._ops, []
            try:
                outcome = await loop.run_in_executor(
                    self._executor, self._apply, [op for op, _ in batch]
                )
            except Exception as exc:  # the database is gone (closed): fail what waits
                logger.error("spool %s failed: %s", self.directory, exc)
                outcome = _Outcome(reads=[], error=exc)
            self._account(outcome)
            reads = iter(outcome.reads)
            for op, future in batch:
                failure = outcome.failure_for(op)
                if future.done():
                    continue
                if failure is None:
                    future.set_result(next(reads) if isinstance(op, _Read) else None)
                else:
                    future.set_exception(_unavailable(failure))
                    future.exception()  # logged in _account; removals are awaited by no one

    def _account(self, outcome: "_Outcome") -> None:
        # Appends are counted when accepted; removals once they are committed.
        if isinstance(outcome.removal, Removed):
            removed = outcome.removal
            self._unremoved.difference_update(removed.seqs)
            if not self._unremoved:
                self._removed.set()
            self._depth -= removed.count
            self._bytes -= removed.size
            if removed.count:
                self._oldest = (
                    removed.oldest
                    if removed.oldest is not None
                    else (time.time() if self._depth else None)
                )
            if not self._depth:
                self._not_empty.clear()
            self._recovered("remove")
        elif (failure := outcome.removal or outcome.error) is not None and self._unremoved:
            self._failed("remove", failure)
            self._removal_retry.start()  # unless it runs already
        if outcome.append is None:
            self._recovered("append")
        elif outcome.append is not _NOTHING:
            self._failed("append", outcome.append)

    def _failed(self, kind: str, error: BaseException) -> None:
        failures = self._failing.get(kind, 0)
        self._failing[kind] = failures + 1
        if not failures:
            consequence = (
                "audit events get 503 spool_unavailable until it can"
                if kind == "append"
                else f"{len(self._unremoved)} record(s) Kafka acknowledged stay in it, marked "
                "sent, and their removal is retried; forwarding waits"
            )
            logger.error(
                "spool %s cannot %s: %s; %s", self.directory, kind, _reason(error), consequence
            )

    def _recovered(self, kind: str) -> None:
        failures = self._failing.pop(kind, 0)
        if failures:
            logger.warning(
                "spool %s can %s again, after %d failed attempt(s)", self.directory, kind, failures
            )

    async def _retry_removals(self) -> None:
        backoff = Backoff(max_s=10.0)
        while self._unremoved:
            await backoff.wait()
            with contextlib.suppress(SpoolUnavailableError):
                await self._enqueue(_Remove(sorted(self._unremoved)))

    def _apply(self, ops: list[_Op]) -> "_Outcome":
        # On the store's thread, one round. Removals commit first, in a transaction of their
        # own: they free room, so they must not fail because an append does not fit. Then the
        # appends, together (group commit); then the reads, which see both.
        store = self._store
        try:
            store.reconnect()  # when the database was dropped as it emptied
        except sqlite3.Error as exc:
            return _Outcome(reads=[], error=exc)
        outcome = _Outcome(reads=[])
        seqs = [seq for op in ops if isinstance(op, _Remove) for seq in op.seqs]
        if seqs:
            try:
                outcome.removal = store.delete(seqs)
            except sqlite3.Error as exc:
                outcome.removal = exc
        appends = [op for op in ops if isinstance(op, SpooledRecord)]
        if not store.has_database:
            # Emptied and dropped, and no new database yet: nothing to read; the appends
            # fail, and the next round tries again.
            if appends:
                outcome.append = SpoolError("cannot create a new spool database")
            outcome.reads = [[] for op in ops if isinstance(op, _Read)]
            return outcome
        if appends:
            try:
                store.insert(appends)
                outcome.append = None
            except (sqlite3.Error, OSError) as exc:
                outcome.append = exc
        outcome.reads = [store.select(op.limit) for op in ops if isinstance(op, _Read)]
        return outcome


# An outcome's append field when the batch held no append.
_NOTHING = Exception("no append")


@dataclass
class _Outcome:
    """What one round of `_apply` did: the reads' rows, the removal (committed, or the error
    that stopped it, or None when there was none) and the appends' error (None when they
    committed, `_NOTHING` when there were none); `error` when nothing could be done."""

    reads: list[list[SpooledRecord]]
    removal: Removed | BaseException | None = None
    append: BaseException | None = _NOTHING
    error: BaseException | None = None  # the round failed as a whole

    def failure_for(self, op: _Op) -> BaseException | None:
        """Why `op` failed, or None when it is done."""
        if self.error is not None:
            return self.error
        if isinstance(op, _Remove):
            return None if isinstance(self.removal, Removed) else self.removal
        if isinstance(op, SpooledRecord):
            return self.append
        return None


def _reason(error: BaseException) -> str:
    name = getattr(error, "sqlite_errorname", None)
    return f"{error} ({name})" if name else str(error)


def _unavailable(error: BaseException) -> SpoolUnavailableError:
    return SpoolUnavailableError(f"the spool cannot write to disk: {_reason(error)}; retry later")
