"""The spool's SQLite store alone: synchronous, in a temporary folder (no broker, no event
loop). The format, order, removal, reopening and the folder's lock that `app.ingest.spool`
builds on."""

import errno
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from app.ingest.spool_store import (
    DATABASE,
    LOCK_FILE,
    SCHEMA_VERSION,
    SpooledRecord,
    SpoolError,
    SpoolStore,
    size_of,
)
from app.kafka import AuditRecord


def row(seq: int, user: str = "user-1") -> SpooledRecord:
    record = AuditRecord(
        topic="ractogateway.audit",
        key=user,
        value=f'{{"n":{seq}}}'.encode(),
        headers={"content-type": "application/json", "rg-event-id": f"event-{seq}"},
    )
    return SpooledRecord(seq, record, f"event-{seq}", created_at=1000.0 + seq, size=size_of(record))


def opened(directory: Path, min_free_bytes: int = 0) -> SpoolStore:
    store = SpoolStore(directory, min_free_bytes=min_free_bytes)
    store.open()
    return store


def test_the_format_on_disk_is_the_documented_table_and_version(tmp_path: Path) -> None:
    store = opened(tmp_path)
    try:
        store.insert([row(1)])
        assert (tmp_path / LOCK_FILE).read_text() == str(os.getpid())
        with sqlite3.connect(tmp_path / DATABASE) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            columns = [c[1] for c in db.execute("PRAGMA table_info(records)")]
            assert columns == [
                "seq",
                "topic",
                "key",
                "value",
                "headers",
                "event_id",
                "created_at",
                "size",
            ]
            stored = db.execute("SELECT * FROM records").fetchone()
        expected = row(1)
        assert stored == (
            1,
            "ractogateway.audit",
            "user-1",
            expected.record.value,
            json.dumps(expected.record.headers, separators=(",", ":")),
            "event-1",
            1001.0,
            expected.size,
        )
    finally:
        store.close()


def test_rows_come_back_in_seq_order_with_every_field_up_to_the_limit(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path)
    try:
        store.insert([row(3, "user-b"), row(1, "user-a")])
        store.insert([row(2, "user-c")])
        assert store.select(10) == [row(1, "user-a"), row(2, "user-c"), row(3, "user-b")]
        assert [r.seq for r in store.select(2)] == [1, 2]
    finally:
        store.close()


def test_a_group_of_rows_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    store = opened(tmp_path)
    try:
        store.insert([row(1)])
        with pytest.raises(sqlite3.IntegrityError):
            store.insert([row(2), row(1)])  # seq 1 is taken: the group fails, row 2 with it
        assert [r.seq for r in store.select(10)] == [1]
    finally:
        store.close()


def test_delete_drops_only_the_given_rows_and_says_what_went(tmp_path: Path) -> None:
    store = opened(tmp_path)
    try:
        store.insert([row(n) for n in range(1, 5)])
        removed = store.delete([1, 3, 999_999])
        assert (removed.seqs, removed.count) == ([1, 3, 999_999], 2)
        assert removed.size == row(1).size + row(3).size
        assert removed.oldest == row(2).created_at
        assert [r.seq for r in store.select(10)] == [2, 4]
        nothing = store.delete([999_999])
        assert (nothing.count, nothing.size, nothing.oldest) == (0, 0, None)
    finally:
        store.close()


def test_a_reopened_store_holds_the_rows_and_numbers_on_after_them(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.insert([row(n) for n in range(1, 4)])
    store.delete([1])
    store.close()

    again = SpoolStore(tmp_path)
    contents = again.open()
    try:
        assert contents.count == 2
        assert contents.size == row(2).size + row(3).size
        assert contents.next_seq == 4
        assert contents.oldest == row(2).created_at
        assert [r.seq for r in again.select(10)] == [2, 3]
    finally:
        again.close()
    empty = SpoolStore(tmp_path / "new")
    assert empty.open() == type(contents)(count=0, size=0, next_seq=1, oldest=None)
    empty.close()


def test_emptied_it_starts_afresh_with_new_files_and_takes_rows_again(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path)
    try:
        store.insert([row(n) for n in range(1, 200)])
        # Held open, the old file keeps its inode: a new file cannot get the same one.
        with (tmp_path / DATABASE).open("rb") as old:
            removed = store.delete(list(range(1, 200)))
            assert os.stat(tmp_path / DATABASE).st_ino != os.fstat(old.fileno()).st_ino
        assert (removed.count, removed.oldest) == (199, None)
        assert store.has_database
        assert store.select(10) == []
        store.insert([row(200)])
        assert [r.seq for r in store.select(10)] == [200]
    finally:
        store.close()


def test_a_second_store_cannot_take_the_folder_until_the_first_closes(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path)
    try:
        with pytest.raises(SpoolError, match=rf"in use by another process \(pid {os.getpid()}\)"):
            opened(tmp_path)
    finally:
        store.close()
    opened(tmp_path).close()  # free again once closed


def test_a_database_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DATABASE) as db:
        db.execute("PRAGMA user_version=2")
    with pytest.raises(SpoolError, match="schema version 2; this release reads version 1"):
        opened(tmp_path)
    opened(tmp_path / "other").close()
    # The refused folder was given up: a store with a readable database may take it.
    (tmp_path / DATABASE).unlink()
    opened(tmp_path).close()


def test_an_insert_that_would_eat_into_the_free_space_floor_writes_nothing(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path, min_free_bytes=1 << 62)
    try:
        with pytest.raises(OSError, match="RG_SPOOL_MIN_FREE_BYTES") as refused:
            store.insert([row(1)])
        assert refused.value.errno == errno.ENOSPC
        assert store.select(10) == []
    finally:
        store.close()


def test_a_closed_store_is_not_open(tmp_path: Path) -> None:
    store = opened(tmp_path)
    store.close()
    with pytest.raises(SpoolError, match="not open"):
        store.reconnect()


def test_the_folder_and_its_files_are_the_service_users_alone(tmp_path: Path) -> None:
    # Spooled records hold prompts and responses: no other user of the machine may read them,
    # whatever the umask.
    directory = tmp_path / "spool"
    previous = os.umask(0o022)
    try:
        store = opened(directory)
        try:
            store.insert([row(1)])
            modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()}
        finally:
            store.close()
    finally:
        os.umask(previous)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert modes == {
        LOCK_FILE: 0o600,
        "spool.sqlite3": 0o600,
        "spool.sqlite3-wal": 0o600,
        "spool.sqlite3-shm": 0o600,
    }
