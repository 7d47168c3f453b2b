"""Unit tests of event ids and times (app/kafka/stamps.py)."""

import os
import time
import uuid
from datetime import UTC, datetime

import pytest

from app.kafka.stamps import format_utc, new_event_id, parse_utc, utc_now_iso


def test_unit_event_ids_are_uuid7_with_the_time_in_milliseconds_first() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid.UUID(new_event_id())
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after
    assert str(made) == made.urn.removeprefix("urn:uuid:")  # the canonical lowercase text


def test_unit_event_ids_do_not_repeat_across_many_refills_of_the_random_pool() -> None:
    ids = [new_event_id() for _ in range(5_000)]
    assert len(set(ids)) == len(ids)
    # 74 random bits each: the bits after the time and version differ from id to id.
    tails = {uuid.UUID(made).int & ((1 << 74) - 1) for made in ids}
    assert len(tails) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this system")
def test_unit_a_forked_child_does_not_repeat_its_parent_s_ids() -> None:
    new_event_id()  # the parent's pool holds unused bytes now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(write, ",".join(new_event_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        childs = pipe.read().split(",")
    parents = [new_event_id() for _ in range(3)]
    tails = {made[-17:] for made in childs + parents}
    assert len(tails) == 6


def test_unit_now_is_written_as_format_utc_writes_a_time() -> None:
    before = datetime.now(UTC)
    text = utc_now_iso()
    after = datetime.now(UTC)
    assert before <= parse_utc(text) <= after
    assert text == format_utc(parse_utc(text))
    assert len(text) == len("2026-01-31T12:00:00.000000Z")


def test_unit_now_follows_the_clock_across_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    moments = iter([1_767_225_599_999_999_000, 1_767_225_600_000_001_000])
    monkeypatch.setattr(time, "time_ns", lambda: next(moments))
    assert utc_now_iso() == "2025-12-31T23:59:59.999999Z"
    assert utc_now_iso() == "2026-01-01T00:00:00.000001Z"
