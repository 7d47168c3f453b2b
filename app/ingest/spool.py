"""The disk spool (`RG_SPOOL_DIR`): audit records kept on local disk while Kafka is away.

One SQLite database in WAL mode with `synchronous=FULL`, so a commit is on disk (the WAL is
fsync'd) before `append()` returns: a 202 "spooled" answer survives a crash of the service or
of the machine. Appends that arrive together share one transaction and one fsync (group
commit), so a burst costs a handful of syncs, not one per request. All database work runs on
one thread of its own; the event loop never waits on the disk.

A folder belongs to one process at a time (an exclusive `flock` on `spool.lock`).

On disk: `spool.sqlite3` (+ `-wal`, `-shm`), one table `records` (seq, topic, key, value,
headers as JSON, event_id, created_at, size), `PRAGMA user_version` = the schema version.
`seq` orders the records; the forwarder reads them in that order and removes each once Kafka
acknowledged it. When the spool drains (every record removed, the removal committed) the files
are dropped and a new database is made: that gives the disk its space back at once.

The disk itself:
- `min_free_bytes` (RG_SPOOL_MIN_FREE_BYTES) is left free: appends that would eat into it are
  refused. Removals write too (a few KB per batch, with `secure_delete=FAST`), so a spool that
  filled its own disk could otherwise never write the removal that frees it.
- an append the disk cannot take (full, or failing) fails as a whole and raises
  `SpoolUnavailableError` (503 `spool_unavailable`): the record was not accepted, nothing is
  lost, the client retries. SQLite's own error is logged, once per run of failures.
- a removal that cannot be written is not forgotten: the record stays on disk but is marked
  acknowledged in memory, so `read()` never hands it out again, and the removal is retried with
  backoff until it commits. The forwarder reads nothing new while removals are pending
  (`wait_removed()`), so at most one batch waits on the disk. Removals commit in a transaction
  of their own, before the appends queued with them, so a failing append never holds one back.
  Should the service stop while removals still cannot be written, those records are on disk
  without the mark and are sent again at the next start (logged as an error; consumers drop
  repeats by `rg-event-id`).
"""

import asyncio
import contextlib
import dataclasses
import errno
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

from app.backoff import Backoff
from app.kafka import AuditRecord, KafkaProduceResult, outcome_of
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


class SpoolUnavailableError(UnavailableError):
    """The spool's disk cannot take the write (full, or failing); the client should retry
    later. The message carries SQLite's own error."""

    code = "spool_unavailable"


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

    def __init__(self, directory: Path, *, max_bytes: int, min_free_bytes: int = 0) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
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
        # Records Kafka acknowledged whose removal is not committed yet: never read again.
        self._unremoved: set[int] = set()
        self._removed = asyncio.Event()
        self._removed.set()
        self._removal_retry: asyncio.Task[None] | None = None
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
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)
        room = _free_bytes(self.directory) + self._bytes - self.min_free_bytes
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
            db = self._connect()
            count, size, last = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MAX(seq), 0) FROM records"
            ).fetchone()
        except (sqlite3.Error, SpoolError) as exc:
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
        Raises `SpoolFullError` when the record does not fit in `max_bytes`, and
        `SpoolUnavailableError` when the disk cannot take it."""
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
        if self._removal_retry is not None:
            self._removal_retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._removal_retry
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
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.directory / DATABASE, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode every commit syncs the WAL, so a committed record is on disk.
            db.execute("PRAGMA synchronous=FULL")
            # FAST, not the ON some builds default to: ON rewrites every freed page, so a
            # removal writes as much as the records held and fails on a full disk.
            db.execute("PRAGMA secure_delete=FAST")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise SpoolError(
                    f"schema version {version}; this release reads version {_SCHEMA_VERSION}"
                )
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

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
        if isinstance(outcome.removal, _Removed):
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
            if self._removal_retry is None or self._removal_retry.done():
                self._removal_retry = asyncio.create_task(
                    self._retry_removals(), name="spool-removal-retry"
                )
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
        # On the spool's thread. Removals commit first, in a transaction of their own: they
        # free room, so they must not fail because an append does not fit. Then the appends,
        # together (group commit); then the reads, which see both.
        if self._lock is None:
            raise SpoolError("the spool is not open")
        if self._db is None:  # dropped when it emptied, and not created again yet
            try:
                self._db = self._connect()
            except sqlite3.Error as exc:
                return _Outcome(reads=[], error=exc)
        db = self._db
        outcome = _Outcome(reads=[])
        seqs = [seq for op in ops if isinstance(op, _Remove) for seq in op.seqs]
        if seqs:
            try:
                outcome.removal = removed = _transaction(db, lambda: self._delete(db, seqs))
            except sqlite3.Error as exc:
                outcome.removal = exc
            else:
                if removed.count and removed.oldest is None:
                    self._start_afresh(db)
        appends = [op for op in ops if isinstance(op, SpooledRecord)]
        if self._db is None:
            # Emptied and dropped, and no new database yet: nothing to read; the appends
            # fail, and the next round tries again.
            if appends:
                outcome.append = SpoolError("cannot create a new spool database")
            outcome.reads = [[] for op in ops if isinstance(op, _Read)]
            return outcome
        db = self._db
        if appends:
            try:
                if self.min_free_bytes:
                    self._check_free_space(sum(op.size for op in appends))
                _transaction(db, lambda: self._insert(db, appends))
                outcome.append = None
            except (sqlite3.Error, OSError) as exc:
                outcome.append = exc
        outcome.reads = [self._select(db, op.limit) for op in ops if isinstance(op, _Read)]
        return outcome

    def _insert(self, db: sqlite3.Connection, records: list[SpooledRecord]) -> None:
        db.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    op.seq,
                    op.record.topic,
                    op.record.key,
                    op.record.value,
                    json.dumps(op.record.headers, separators=(",", ":")),
                    op.event_id,
                    op.created_at,
                    op.size,
                )
                for op in records
            ],
        )

    def _delete(self, db: sqlite3.Connection, seqs: list[int]) -> "_Removed":
        count = size = 0
        for seq in seqs:
            for (row_size,) in db.execute(
                "DELETE FROM records WHERE seq = ? RETURNING size", (seq,)
            ).fetchall():
                count += 1
                size += row_size
        return _Removed(seqs, count, size, self._read_oldest() if count else None)

    def _start_afresh(self, db: sqlite3.Connection) -> None:
        # Empty, every removal committed: the files are dropped and a new database made,
        # which gives all their space back at once (a file SQLite shrank itself would have
        # to be rewritten first, and that needs the room a full disk lacks). The database
        # goes before its WAL: a crash in between leaves the WAL, whose last commit is this
        # same empty spool.
        db.close()
        self._db = None
        for name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
        with contextlib.suppress(sqlite3.Error):
            self._db = self._connect()

    def _check_free_space(self, size: int) -> None:
        # The floor keeps room for what removals and checkpoints write: a spool that
        # filled its own disk could otherwise never write the removal that frees it.
        free = _free_bytes(self.directory)
        if free - size < self.min_free_bytes:
            raise OSError(
                errno.ENOSPC,
                f"{free} bytes free on the spool's disk, and RG_SPOOL_MIN_FREE_BYTES keeps "
                f"{self.min_free_bytes} for removals",
            )

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


# An outcome's append field when the batch held no append.
_NOTHING = Exception("no append")


@dataclass(frozen=True)
class _Removed:
    """A committed removal: the seqs asked for, the rows and bytes that went, the new oldest."""

    seqs: list[int]
    count: int
    size: int
    oldest: float | None


@dataclass
class _Outcome:
    """What one round of `_apply` did: the reads' rows, the removal (committed, or the error
    that stopped it, or None when there was none) and the appends' error (None when they
    committed, `_NOTHING` when there were none); `error` when nothing could be done."""

    reads: list[list[SpooledRecord]]
    removal: _Removed | BaseException | None = None
    append: BaseException | None = _NOTHING
    error: BaseException | None = None  # the round failed as a whole

    def failure_for(self, op: _Op) -> BaseException | None:
        """Why `op` failed, or None when it is done."""
        if self.error is not None:
            return self.error
        if isinstance(op, _Remove):
            return None if isinstance(self.removal, _Removed) else self.removal
        if isinstance(op, SpooledRecord):
            return self.append
        return None


def _transaction(db: sqlite3.Connection, work: Callable[[], Any]) -> Any:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        db.execute("COMMIT")
    except BaseException:
        # SQLite rolls some failures back by itself (SQLITE_FULL among them): a second
        # ROLLBACK would raise "no transaction is active" and hide the error that matters.
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
    return result


def _reason(error: BaseException) -> str:
    name = getattr(error, "sqlite_errorname", None)
    return f"{error} ({name})" if name else str(error)


def _unavailable(error: BaseException) -> SpoolUnavailableError:
    return SpoolUnavailableError(f"the spool cannot write to disk: {_reason(error)}; retry later")


def _free_bytes(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def _size_of(record: AuditRecord) -> int:
    headers = sum(len(k) + len(v) for k, v in record.headers.items())
    return len(record.value) + len(record.key.encode()) + headers
