"""The disk spool (`RG_SPOOL_DIR`): audit records kept on local disk while Kafka is away.

One SQLite database in WAL mode with `synchronous=FULL`, so a commit is on disk (the WAL is
fsync'd) before `append()` returns: a 202 "spooled" answer survives a crash of the service or
of the machine. Appends that arrive together share one transaction and one fsync (group
commit), so a burst costs a handful of syncs, not one per request. All database work runs on
one thread of its own; the event loop never waits on the disk.

A folder belongs to one process at a time (an exclusive `flock` on `spool.lock`).
"""

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app.kafka import AuditRecord, KafkaProduceResult
from app.problems import UnavailableError

logger = logging.getLogger(__name__)

DATABASE = "spool.sqlite3"
LOCK_FILE = "spool.lock"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    size INTEGER NOT NULL
)
"""


class SpoolError(Exception):
    """The spool cannot be used (its folder, its lock, its database)."""


class SpoolFullError(UnavailableError):
    """The spool holds its maximum size; the client should retry later."""

    code = "spool_full"


@dataclass(frozen=True)
class SpooledRecord:
    """One record in the spool: its place (`seq`, the order it is forwarded in), the record,
    and, while the service still waits for an earlier attempt to deliver it, that delivery."""

    seq: int
    record: AuditRecord
    event_id: str
    created_at: float
    size: int
    delivery: "asyncio.Future[KafkaProduceResult] | None" = None


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

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._db: sqlite3.Connection | None = None
        self._lock: IO[str] | None = None
        self._next_seq = 1
        self._depth = 0
        self._bytes = 0
        self._oldest: float | None = None
        self._ops: list[tuple[_Op, asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._deliveries: dict[int, asyncio.Future[KafkaProduceResult]] = {}
        self._not_empty = asyncio.Event()

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
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)
        if self._depth:
            self._not_empty.set()
            logger.warning(
                "spool %s holds %d record(s) (%d bytes) from an earlier run; forwarding them",
                self.directory,
                self._depth,
                self._bytes,
            )

    def _open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = (self.directory / LOCK_FILE).open("a+", encoding="utf-8")
        except OSError as exc:
            raise SpoolError(f"cannot use spool folder {self.directory}: {exc}") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise SpoolError(
                f"spool folder {self.directory} is in use by another process (pid {holder})"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        try:
            db = sqlite3.connect(self.directory / DATABASE, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode every commit syncs the WAL, so a committed record is on disk.
            db.execute("PRAGMA synchronous=FULL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise SpoolError(
                    f"spool {self.directory} has schema version {version}; this release reads "
                    f"version {_SCHEMA_VERSION}"
                )
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            count, size, last = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MAX(seq), 0) FROM records"
            ).fetchone()
        except sqlite3.Error as exc:
            self._release_lock()
            raise SpoolError(f"cannot open spool {self.directory}: {exc}") from exc
        self._db = db
        self._depth, self._bytes, self._next_seq = count, size, last + 1
        self._oldest = self._read_oldest()

    async def append(
        self,
        record: AuditRecord,
        *,
        event_id: str,
        delivery: "asyncio.Future[KafkaProduceResult] | None" = None,
    ) -> SpooledRecord:
        """Append `record` and return once it is on disk. `delivery` is an earlier attempt
        still under way: the forwarder waits for it instead of sending the record again.
        Raises `SpoolFullError` when the record does not fit in `max_bytes`."""
        size = _size_of(record)
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
            raise
        return op

    def watch(self, seq: int, delivery: "asyncio.Future[KafkaProduceResult]") -> None:
        """Tie record `seq` to a delivery under way: once Kafka acknowledges it the record is
        removed (even during shutdown, while the producer flushes); when it fails the record
        is read without it again, to be sent anew."""
        self._deliveries[seq] = delivery

        def settled(done: "asyncio.Future[KafkaProduceResult]") -> None:
            if not done.cancelled() and done.exception() is None:
                self.remove([seq])
            elif self._deliveries.get(seq) is done:
                del self._deliveries[seq]

        delivery.add_done_callback(settled)

    async def read(self, limit: int) -> list[SpooledRecord]:
        """The oldest `limit` records, in the order they were appended."""
        rows: list[SpooledRecord] = await self._enqueue(_Read(limit))
        return [dataclasses.replace(r, delivery=self._deliveries.get(r.seq)) for r in rows]

    def remove(self, seqs: Iterable[int]) -> "asyncio.Future[None]":
        """Drop records (those Kafka acknowledged); unknown ones are ignored. Await the result
        to know it is committed; from a callback, leave it: `close()` completes it."""
        wanted = list(seqs)
        for seq in wanted:
            self._deliveries.pop(seq, None)
        return self._enqueue(_Remove(wanted))

    async def wait_not_empty(self) -> None:
        """Return once the spool holds a record."""
        await self._not_empty.wait()

    async def close(self) -> None:
        """Finish queued work, then close the database; the records stay for the next run."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

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
            except Exception as exc:
                logger.error("spool %s failed: %s", self.directory, exc)
                error = SpoolError(f"the spool failed: {exc}")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                        future.exception()  # logged above; removals are awaited by no one
                continue
            results, removed, removed_bytes, oldest = outcome
            if removed:
                # Appends are counted when accepted; removals once they are committed.
                self._depth -= removed
                self._bytes -= removed_bytes
                self._oldest = (
                    oldest if oldest is not None else (time.time() if self._depth else None)
                )
                if not self._depth:
                    self._not_empty.clear()
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _apply(self, ops: list[_Op]) -> tuple[list[Any], int, int, float | None]:
        # On the spool's thread: one transaction for all of `ops`. Returns the results, and
        # what was removed, for the event loop to account.
        db = self._db
        if db is None:
            raise SpoolError("the spool is not open")
        results: list[Any] = []
        removed = 0
        removed_bytes = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                if isinstance(op, SpooledRecord):
                    db.execute(
                        "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            op.seq,
                            op.record.topic,
                            op.record.key,
                            op.record.value,
                            json.dumps(op.record.headers, separators=(",", ":")),
                            op.event_id,
                            op.created_at,
                            op.size,
                        ),
                    )
                    results.append(None)
                elif isinstance(op, _Remove):
                    for seq in op.seqs:
                        rows = db.execute(
                            "DELETE FROM records WHERE seq = ? RETURNING size", (seq,)
                        ).fetchall()
                        removed += len(rows)
                        removed_bytes += sum(row[0] for row in rows)
                    results.append(None)
                else:
                    results.append(self._select(db, op.limit))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return results, removed, removed_bytes, self._read_oldest() if removed else None

    def _select(self, db: sqlite3.Connection, limit: int) -> list[SpooledRecord]:
        rows = db.execute(
            "SELECT seq, topic, key, value, headers, event_id, created_at, size "
            "FROM records ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            SpooledRecord(
                seq=seq,
                record=AuditRecord(topic, key, value, json.loads(headers)),
                event_id=event_id,
                created_at=created_at,
                size=size,
            )
            for seq, topic, key, value, headers, event_id, created_at, size in rows
        ]

    def _read_oldest(self) -> float | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT created_at FROM records ORDER BY seq LIMIT 1").fetchone()
        return float(row[0]) if row is not None else None


def _size_of(record: AuditRecord) -> int:
    headers = sum(len(k) + len(v) for k, v in record.headers.items())
    return len(record.value) + len(record.key.encode()) + headers
