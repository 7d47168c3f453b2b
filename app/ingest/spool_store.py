"""The spool's storage: audit records in one SQLite database on local disk, synchronous.

`SpoolStore` is the part of the disk spool (`app.ingest.spool`) that touches the disk; every
method blocks, and the spool calls them all from one thread of its own, never from the event
loop. It knows nothing of deliveries or accounting: it writes, reads and deletes rows.

## On disk (folder `RG_SPOOL_DIR`)

- `spool.lock`: holds an exclusive `flock` while a process uses the folder, and that process's
  pid (named in the error a second process gets).
- `spool.sqlite3` (+ `spool.sqlite3-wal`, `spool.sqlite3-shm`): one table,

      records(seq INTEGER PRIMARY KEY, topic TEXT, key TEXT, value BLOB,
              headers TEXT  -- the record's headers as a JSON object
              event_id TEXT, created_at REAL  -- Unix seconds when appended
              size INTEGER  -- bytes of key, value and headers, what RG_SPOOL_MAX_BYTES counts)

  and `PRAGMA user_version` = the schema version (1); a database of another version is
  refused, not converted.

## Invariants

- A committed row is on disk: WAL mode with `synchronous=FULL` syncs the WAL at every commit,
  so a row survives a crash of the process or of the machine once `insert()` returned.
- `seq` gives the order: rows are read oldest first, and a new row's `seq` is above every
  row's there ever was in this database (the spool numbers them; see `Contents.next_seq`).
- Writes go in transactions (`BEGIN IMMEDIATE`): a group of rows is inserted, or deleted, as a
  whole or not at all.
- `min_free_bytes` (RG_SPOOL_MIN_FREE_BYTES) stays free on the disk: an insert that would eat
  into it fails (ENOSPC) before it writes. Deletes write too (a few KB per batch, with
  `secure_delete=FAST`), so a spool that filled its own disk could otherwise never write the
  delete that frees it.
- When a delete leaves the table empty the files are dropped and a new database made: that
  gives the disk its space back at once (a file SQLite shrank itself would have to be rewritten
  first, which needs the room a full disk lacks). The database goes before its WAL: a crash in
  between leaves the WAL, whose last commit is this same empty table.
"""

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from app.kafka import AuditRecord, KafkaProduceResult

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")

DATABASE = "spool.sqlite3"
LOCK_FILE = "spool.lock"
SCHEMA_VERSION = 1
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


@dataclass(frozen=True)
class SpooledRecord:
    """One record in the spool: its place (`seq`, the order it is forwarded in), the record,
    and, while the service still waits for an earlier attempt to deliver it, that delivery
    (kept in memory only, never stored)."""

    seq: int
    record: AuditRecord
    event_id: str
    created_at: float
    size: int
    delivery: "asyncio.Future[KafkaProduceResult] | None" = None


@dataclass(frozen=True)
class Contents:
    """What an opened store holds: rows, their bytes, the `seq` for the next row and when the
    oldest row was appended (None when empty)."""

    count: int
    size: int
    next_seq: int
    oldest: float | None


@dataclass(frozen=True)
class Removed:
    """A committed delete: the seqs asked for, the rows and bytes that went, and when the oldest
    row left was appended (None when none is left)."""

    seqs: list[int]
    count: int
    size: int
    oldest: float | None


def _private(path: Path) -> int:
    """A descriptor of `path` opened for appending, created 0600 when missing."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)


class SpoolStore:
    """The records of one spool folder in SQLite; `open()` first, `close()` last. Not thread
    safe: one thread at a time (the spool's own)."""

    def __init__(self, directory: Path, *, min_free_bytes: int = 0) -> None:
        self.directory = Path(directory)
        self.min_free_bytes = min_free_bytes
        self._db: sqlite3.Connection | None = None
        self._lock: IO[str] | None = None

    @property
    def has_database(self) -> bool:
        """False after the table emptied when no new database could be made yet."""
        return self._db is not None

    def open(self) -> Contents:
        """Take the folder (creating it), open or create the database, and say what it holds.
        Raises `SpoolError` when the folder cannot be used, another process holds it, or the
        database cannot be opened."""
        try:
            # The records hold prompts and responses: the folder and its files are the service
            # user's alone, whatever the umask (SQLite gives the WAL and shm files the
            # database file's mode).
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            lock = os.fdopen(_private(self.directory / LOCK_FILE), "a+", encoding="utf-8")
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
        return Contents(count, size, last + 1, self._oldest())

    def reconnect(self) -> None:
        """Make the database again when it was dropped (emptied) and not made anew yet. Raises
        `SpoolError` when the store is not open, `sqlite3.Error` when it cannot be made."""
        if self._lock is None:
            raise SpoolError("the spool is not open")
        if self._db is None:
            self._db = self._connect()

    def insert(self, records: list[SpooledRecord]) -> None:
        """Write `records` in one transaction, synced to disk on return. Raises `OSError`
        (ENOSPC) when they would eat into `min_free_bytes`, `sqlite3.Error` when the disk
        cannot take them; either way nothing was written."""
        db = self._database()
        if self.min_free_bytes:
            self._check_free_space(sum(r.size for r in records))
        _transaction(db, lambda: self._insert(db, records))

    def delete(self, seqs: list[int]) -> Removed:
        """Delete the rows `seqs` (unknown ones are ignored) in one transaction; when that
        empties the table, start afresh with a new database. Raises `sqlite3.Error` when the
        disk cannot take the delete (nothing deleted)."""
        db = self._database()
        removed = _transaction(db, lambda: self._delete(db, seqs))
        if removed.count and removed.oldest is None:
            self._start_afresh(db)
        return removed

    def select(self, limit: int) -> list[SpooledRecord]:
        """The oldest `limit` rows, in `seq` order."""
        rows = self._database().execute(
            "SELECT seq, topic, key, value, headers, event_id, created_at, size "
            "FROM records ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            SpooledRecord(
                seq=seq,
                record=AuditRecord(topic, key, value, json.loads(headers)),
                event_id=event_id,
                created_at=created_at,
                size=size,
            )
            for seq, topic, key, value, headers, event_id, created_at, size in rows.fetchall()
        ]

    def close(self) -> None:
        """Close the database and give the folder up; the rows stay for the next `open()`."""
        if self._db is not None:
            self._db.close()
            self._db = None
        self._release_lock()

    def _database(self) -> sqlite3.Connection:
        if self._db is None:
            raise SpoolError("the spool has no database (not open, or not made anew yet)")
        return self._db

    def _connect(self) -> sqlite3.Connection:
        os.close(_private(self.directory / DATABASE))
        db = sqlite3.connect(self.directory / DATABASE, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode every commit syncs the WAL, so a committed record is on disk.
            db.execute("PRAGMA synchronous=FULL")
            # FAST, not the ON some builds default to: ON rewrites every freed page, so a
            # delete writes as much as the records held and fails on a full disk.
            db.execute("PRAGMA secure_delete=FAST")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise SpoolError(
                    f"schema version {version}; this release reads version {SCHEMA_VERSION}"
                )
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def _release_lock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _insert(self, db: sqlite3.Connection, records: list[SpooledRecord]) -> None:
        db.executemany(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.seq,
                    r.record.topic,
                    r.record.key,
                    r.record.value,
                    json.dumps(r.record.headers, separators=(",", ":")),
                    r.event_id,
                    r.created_at,
                    r.size,
                )
                for r in records
            ],
        )

    def _delete(self, db: sqlite3.Connection, seqs: list[int]) -> Removed:
        count = size = 0
        for seq in seqs:
            for (row_size,) in db.execute(
                "DELETE FROM records WHERE seq = ? RETURNING size", (seq,)
            ).fetchall():
                count += 1
                size += row_size
        return Removed(seqs, count, size, self._oldest() if count else None)

    def _start_afresh(self, db: sqlite3.Connection) -> None:
        # The database before its WAL (see the module docstring). When no new database can be
        # made, `reconnect()` tries again at the next round.
        db.close()
        self._db = None
        for name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
        with contextlib.suppress(sqlite3.Error):
            self._db = self._connect()

    def _check_free_space(self, size: int) -> None:
        free = free_bytes(self.directory)
        if free - size < self.min_free_bytes:
            raise OSError(
                errno.ENOSPC,
                f"{free} bytes free on the spool's disk, and RG_SPOOL_MIN_FREE_BYTES keeps "
                f"{self.min_free_bytes} for removals",
            )

    def _oldest(self) -> float | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT created_at FROM records ORDER BY seq LIMIT 1").fetchone()
        return float(row[0]) if row is not None else None


def _transaction(db: sqlite3.Connection, work: Callable[[], T]) -> T:
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


def free_bytes(directory: Path) -> int:
    """Bytes free for an unprivileged writer on the disk under `directory`."""
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def size_of(record: AuditRecord) -> int:
    """What a record counts against RG_SPOOL_MAX_BYTES: its key, value and headers."""
    headers = sum(len(k) + len(v) for k, v in record.headers.items())
    return len(record.value) + len(record.key.encode()) + headers
