"""The disk spool on a real SQLite database in a temporary folder (no broker involved)."""

import asyncio
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.errors import SpoolFullError, SpoolUnavailableError
from app.ingest.spool import Spool, SpoolError
from app.kafka import AuditRecord, KafkaProduceResult
from tests.helpers.disk import fill


def record(n: int, user: str = "user-1") -> AuditRecord:
    return AuditRecord(
        topic="ractogateway.audit",
        key=user,
        value=f'{{"n":{n}}}'.encode(),
        headers={"content-type": "application/json", "rg-event-id": f"event-{n}"},
    )


async def opened(directory: Path, max_bytes: int = 1 << 20) -> Spool:
    spool = Spool(directory, max_bytes=max_bytes)
    await spool.open()
    return spool


async def test_records_survive_a_reopen_in_order_with_every_field(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    for n in range(5):
        await spool.append(record(n, user=f"user-{n % 2}"), event_id=f"event-{n}")
    size = spool.size_bytes
    await spool.close()

    again = await opened(tmp_path)
    try:
        assert again.depth == 5
        assert again.size_bytes == size
        rows = await again.read(10)
        assert [row.record for row in rows] == [record(n, user=f"user-{n % 2}") for n in range(5)]
        assert [row.event_id for row in rows] == [f"event-{n}" for n in range(5)]
        assert [row.seq for row in rows] == sorted(row.seq for row in rows)
        await again.append(record(5), event_id="event-5")
        assert (await again.read(10))[-1].seq > rows[-1].seq
    finally:
        await again.close()


async def test_concurrent_appends_are_all_kept_in_the_order_they_were_made(
    tmp_path: Path,
) -> None:
    spool = await opened(tmp_path)
    try:
        await asyncio.gather(*(spool.append(record(n), event_id=f"event-{n}") for n in range(300)))
        rows = await spool.read(1000)
        assert [row.event_id for row in rows] == [f"event-{n}" for n in range(300)]
        assert spool.depth == 300
    finally:
        await spool.close()


async def test_remove_drops_only_the_given_records_and_updates_the_counts(
    tmp_path: Path,
) -> None:
    spool = await opened(tmp_path)
    try:
        assert spool.oldest_age_s() == 0
        rows = [await spool.append(record(n), event_id=f"event-{n}") for n in range(4)]
        assert spool.oldest_age_s(now=lambda: rows[0].created_at + 7) == pytest.approx(7)
        await spool.remove([rows[0].seq, rows[2].seq, 999_999])
        left = await spool.read(10)
        assert [row.event_id for row in left] == ["event-1", "event-3"]
        assert spool.depth == 2
        assert spool.size_bytes == rows[1].size + rows[3].size
        assert spool.oldest_age_s(now=lambda: rows[1].created_at + 3) == pytest.approx(3)
        await spool.remove([rows[1].seq, rows[3].seq])
        assert (spool.depth, spool.size_bytes, spool.oldest_age_s()) == (0, 0, 0)
    finally:
        await spool.close()


async def test_a_full_spool_refuses_and_takes_records_again_once_drained(tmp_path: Path) -> None:
    size = (
        len(record(0).value)
        + len(b"user-1")
        + sum(len(k) + len(v) for k, v in record(0).headers.items())
    )
    spool = await opened(tmp_path / "bounded", max_bytes=2 * size)
    try:
        kept = [await spool.append(record(n), event_id=f"event-{n}") for n in range(2)]
        with pytest.raises(SpoolFullError, match="cannot take this record"):
            await spool.append(record(2), event_id="event-2")
        assert spool.depth == 2
        await spool.remove([kept[0].seq])
        await spool.append(record(3), event_id="event-3")
        assert [row.event_id for row in await spool.read(10)] == ["event-1", "event-3"]
    finally:
        await spool.close()


async def test_a_second_process_cannot_use_the_same_folder(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    try:
        with pytest.raises(SpoolError, match="in use by another process"):
            await opened(tmp_path)
    finally:
        await spool.close()
    await (await opened(tmp_path)).close()  # free again once closed


async def test_a_record_appended_is_on_disk_when_the_process_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from pathlib import Path
        from app.kafka import AuditRecord
        from app.ingest.spool import Spool

        async def main():
            spool = Spool(Path({str(tmp_path)!r}), max_bytes=1 << 20)
            await spool.open()
            await spool.append(AuditRecord("t", "k", b"v", {{}}), event_id="survivor")
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush, no atexit

        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
    assert await asyncio.wait_for(process.wait(), 60) == -9
    spool = await opened(tmp_path)
    try:
        assert [row.event_id for row in await spool.read(10)] == ["survivor"]
    finally:
        await spool.close()


async def test_an_earlier_delivery_travels_with_its_record_until_removed(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    try:
        delivery: asyncio.Future[KafkaProduceResult] = asyncio.get_running_loop().create_future()
        linked = await spool.append(record(0), event_id="event-0", delivery=delivery)
        await spool.append(record(1), event_id="event-1")
        rows = await spool.read(10)
        assert [row.delivery for row in rows] == [delivery, None]
        spool.remove([linked.seq])  # e.g. from the delivery's callback
    finally:
        await spool.close()  # completes the removal
    again = await opened(tmp_path)
    try:
        assert [row.event_id for row in await again.read(10)] == ["event-1"]
    finally:
        await again.close()


async def test_an_unusable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SpoolError, match="cannot use spool folder"):
        await opened(blocker / "spool")


def big(n: int) -> AuditRecord:
    return AuditRecord("ractogateway.audit", "user-1", b"x" * 100_000, {"rg-event-id": f"big-{n}"})


def free_bytes(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


async def test_an_append_on_a_full_disk_is_refused_with_sqlites_error_and_nothing_counted(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = await opened(small_disk / "spool", max_bytes=1 << 30)
    try:
        await spool.append(big(0), event_id="big-0")
        counted = (spool.depth, spool.size_bytes)
        filler = fill(small_disk)
        for n in (1, 2):
            with pytest.raises(SpoolUnavailableError, match=r"database or disk is full"):
                await spool.append(big(n), event_id=f"big-{n}")
        assert (spool.depth, spool.size_bytes) == counted
        # SQLite's own error, logged once however many appends fail.
        logged = [r.getMessage() for r in caplog.records if "cannot append" in r.getMessage()]
        assert len(logged) == 1
        assert "database or disk is full (SQLITE_FULL)" in logged[0]
        assert not any("cannot rollback" in r.getMessage() for r in caplog.records)
        filler.unlink()
        await spool.append(big(3), event_id="big-3")
        assert [row.event_id for row in await spool.read(10)] == ["big-0", "big-3"]
    finally:
        await spool.close()


async def test_a_removal_that_cannot_be_written_is_retried_and_never_read_again(
    small_disk: Path,
) -> None:
    spool = await opened(small_disk / "spool", max_bytes=1 << 30)
    try:
        rows = [await spool.append(big(n), event_id=f"big-{n}") for n in range(5)]
        filler = fill(small_disk)
        with pytest.raises(SpoolUnavailableError, match=r"database or disk is full"):
            await spool.remove([row.seq for row in rows[:3]])
        # Acknowledged: never handed out again, though still on disk.
        assert [row.event_id for row in await spool.read(10)] == ["big-3", "big-4"]
        assert spool.depth == 5
        waiting = asyncio.ensure_future(spool.wait_removed())
        await asyncio.sleep(1)
        assert not waiting.done()
        filler.unlink()
        await asyncio.wait_for(waiting, 30)  # retried with backoff, by itself
        assert spool.depth == 2
    finally:
        await spool.close()
    again = await opened(small_disk / "spool")
    try:
        assert [row.event_id for row in await again.read(10)] == ["big-3", "big-4"]
    finally:
        await again.close()


@dataclass
class Appended:
    count: int
    refusal: Exception


async def append_until_refused(spool: Spool, limit: int = 100) -> Appended:
    """Append big records until one is refused (at most `limit`)."""
    for n in range(limit):
        try:
            await spool.append(big(n), event_id=f"big-{n}")
        except Exception as exc:
            return Appended(n, exc)
    raise AssertionError(f"{limit} records appended, none refused")


async def test_a_spool_that_fills_its_own_disk_stops_short_and_gets_the_space_back(
    small_disk: Path,
) -> None:
    spool = Spool(small_disk / "spool", max_bytes=1 << 30, min_free_bytes=512 * 1024)
    await spool.open()
    try:
        for _ in range(3):  # and again: the space comes back each time it drains
            appended = await append_until_refused(spool)
            assert isinstance(appended.refusal, SpoolUnavailableError)
            assert "RG_SPOOL_MIN_FREE_BYTES" in str(appended.refusal)
            assert appended.count > 20  # most of the 4 MiB, short of the floor
            assert free_bytes(small_disk) >= 512 * 1024 - 100_000
            await spool.remove([row.seq for row in await spool.read(1000)])
            assert spool.depth == 0
            assert free_bytes(small_disk) > 3 * 1024 * 1024  # the files start afresh
    finally:
        await spool.close()
