"""The recent-records buffer (app/recent/buffer.py): bounds, filters, order, pages and
subscribers (unit, no broker)."""

import asyncio
import json

from app.recent.buffer import RecentRecords
from app.recent.filters import EVERY_RECORD, RecordFilter
from app.recent.record import MessagesPage, MessageView
from tests.helpers.recent import JSON, message


def test_it_keeps_the_newest_records_up_to_the_record_bound() -> None:
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    for offset in range(50):
        recent.add(message(offset))
        assert recent.counts()["t"] <= 10
    assert [r.offset for r in recent.query(limit=100)] == list(range(49, 39, -1))


def test_it_never_holds_more_than_the_byte_bound() -> None:
    recent = RecentRecords(["t"], max_records=1000, max_bytes=4096)
    for offset in range(200):
        recent.add(message(offset, value="x" * (offset % 300)))
        assert recent.sizes()["t"] <= 4096
    kept = recent.query(limit=1000)
    assert sum(r.size for r in kept) == recent.sizes()["t"]
    assert kept[0].offset == 199


def test_a_record_larger_than_the_byte_bound_alone_is_not_kept() -> None:
    recent = RecentRecords(["t"], max_records=10, max_bytes=1024)
    recent.add(message(0))
    assert recent.add(message(1, value="x" * 5000)) is None
    assert recent.dropped_oversized == 1
    assert [r.offset for r in recent.query()] == [0]


def test_records_read_again_after_a_reconnect_are_ignored() -> None:
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    for offset in range(3):
        recent.add(message(offset))
    for offset in range(3):
        assert recent.add(message(offset)) is None
    assert recent.add(message(0, partition=1)) is not None
    assert recent.counts()["t"] == 4


def test_records_of_other_topics_are_ignored() -> None:
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    assert recent.add(message(0, topic="elsewhere")) is None


def test_filters_and_order() -> None:
    recent = RecentRecords(["a", "b"], max_records=100, max_bytes=10**6)
    recent.add(message(0, topic="a", key="u1", timestamp_ms=100))
    recent.add(message(0, topic="b", key="u2", timestamp_ms=300))
    recent.add(message(1, topic="a", key="u2", timestamp_ms=200))
    recent.add(message(2, topic="a", key=None, timestamp_ms=400))

    def offsets(where: RecordFilter = EVERY_RECORD, limit: int = 50) -> list[tuple[str, int]]:
        return [(r.topic, r.offset) for r in recent.query(where, limit=limit)]

    assert offsets() == [("a", 2), ("b", 0), ("a", 1), ("a", 0)]
    assert offsets(RecordFilter(topic="a")) == [("a", 2), ("a", 1), ("a", 0)]
    assert offsets(RecordFilter(key="u2")) == [("b", 0), ("a", 1)]
    assert offsets(RecordFilter(since_ms=200)) == [("a", 2), ("b", 0), ("a", 1)]
    assert offsets(limit=2) == [("a", 2), ("b", 0)]
    assert offsets(RecordFilter(topic="b", key="u1")) == []


def test_unit_a_page_is_the_messages_page_of_the_records_found() -> None:
    # GET /messages answers these bytes as they are: a MessagesPage of the records `query`
    # finds, each as `shown` gives it (checkpointed as the coverage says now).
    writer = "0123456789abcdef0123456789abcdef"
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6, audit_topic="t")
    for offset in range(3):
        chained = {**JSON, "rg-writer": writer.encode(), "rg-seq": str(offset).encode()}
        recent.add(message(offset, value={"n": offset}, headers=chained))

    def coverage(writer: str, seq: int) -> bool:
        return seq < 1

    where = RecordFilter(since_ms=1_000)
    page = recent.page(where, limit=2, coverage=coverage)
    shown = [b"".join(recent.shown(r, coverage)) for r in recent.query(where, limit=2)]
    assert page == b'{"messages":[' + b",".join(shown) + b'],"count":2}'
    parsed = MessagesPage.model_validate_json(page)
    assert [(m.offset, m.checkpointed) for m in parsed.messages] == [(2, False), (1, False)]
    assert parsed.messages[0] == MessageView.model_validate_json(shown[0])
    assert json.loads(recent.page(RecordFilter(key="none"), limit=5, coverage=coverage)) == {
        "messages": [],
        "count": 0,
    }


async def test_subscribers_get_records_kept_after_they_subscribed() -> None:
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    recent.add(message(0))
    async with recent.subscribe() as backlog:
        recent.add(message(1))
        recent.add(message(1))  # a duplicate: not passed on either
        record = await asyncio.wait_for(backlog.get(), 1)
        assert record is not None
        assert record.offset == 1
        assert len(backlog) == 0
        assert backlog.size == 0


async def test_a_subscriber_that_falls_1000_records_behind_is_cut_off() -> None:
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    async with recent.subscribe() as backlog:
        for offset in range(1000):
            recent.add(message(offset))
        assert (len(backlog), recent.subscribers_cut) == (1000, 0)
        recent.add(message(1000))
        # Cut off: the backlog is dropped at once, the subscriber learns it on its next get.
        assert (len(backlog), backlog.size) == (0, 0)
        assert await backlog.get() is None
    assert recent.subscribers_cut == 1


async def test_a_subscriber_is_cut_off_past_the_byte_bound_of_one_topic() -> None:
    # Records the buffer evicted stay referenced by a backlog: it is bounded in bytes too, at
    # RG_MESSAGES_BUFFER_BYTES (it was 1,000 records of any size: up to 1 GB behind).
    recent = RecentRecords(["t"], max_records=1000, max_bytes=100_000)
    async with recent.subscribe() as backlog:
        for offset in range(9):
            recent.add(message(offset, value="x" * 10_000))
        assert len(backlog) == 9
        assert backlog.size <= 100_000
        recent.add(message(9, value="x" * 10_000))
        assert (len(backlog), backlog.size, backlog.cut) == (0, 0, True)
        recent.add(message(10))  # nothing more for it
        assert await backlog.get() is None
    assert recent.subscribers_cut == 1


def test_unit_only_records_of_the_audit_topic_show_a_place_on_a_chain() -> None:
    # Another topic's publisher chooses its headers: rg-writer/rg-seq of a real writer made its
    # record show that writer's place, and `checkpointed: true` once a checkpoint covered it.
    writer = "0123456789abcdef0123456789abcdef"
    forged = {**JSON, "rg-writer": writer.encode(), "rg-seq": b"5", "rg-redaction": b"mask;v=1"}
    recent = RecentRecords(["audit", "other"], max_records=10, max_bytes=10**6, audit_topic="audit")
    genuine = recent.add(message(0, topic="audit", value={"a": 1}, headers=forged))
    other = recent.add(message(0, topic="other", value={"a": 1}, headers=forged))
    assert genuine is not None
    assert other is not None

    def covered(writer: str, seq: int) -> bool:
        return True

    for record in (genuine, other):  # as served the first time, and from the kept view
        for _ in range(2):
            shown = json.loads(b"".join(recent.shown(record, covered)))
            place = (shown["writer"], shown["seq"], shown["checkpointed"])
            assert place == ((writer, 5, True) if record is genuine else (None, None, None))
    # Its headers are still shown as they are.
    assert json.loads(other.json(covered))["headers"]["rg-writer"] == writer


def test_unit_a_record_stamped_in_the_future_cannot_push_genuine_ones_out() -> None:
    # Five records stamped 9999-12-31 in a 5-record buffer made each genuine record that
    # followed disappear at once (evicted as the oldest by timestamp).
    now_s = 1_800_000_000.0
    recent = RecentRecords(["t"], max_records=5, max_bytes=10**6, clock=lambda: now_s)
    for offset in range(5):
        recent.add(message(offset, key="future", timestamp_ms=253_402_300_799_999))
    genuine = recent.add(message(5, key="genuine", timestamp_ms=int(now_s * 1000) + 1))
    assert genuine is not None
    assert recent.query(limit=5)[0].key == "genuine"
    # Ordered as if stamped when read: it is newest until newer ones arrive, then goes.
    for offset in range(6, 11):
        now_s += 1
        recent.add(message(offset, key="later", timestamp_ms=int(now_s * 1000)))
    assert [r.key for r in recent.query(limit=5)] == ["later"] * 5
    # The record's own timestamp is what it shows.
    assert json.loads(genuine.json(lambda writer, seq: None))["timestamp_ms"] == 1_800_000_000_001


def test_unit_a_record_shown_keeps_its_view_within_the_byte_bound() -> None:
    raw = b'{"pad": "' + b"x" * 400 + b'"}'
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    record = recent.add(message(0, value=raw, headers=JSON))
    assert record is not None
    before = recent.sizes()["t"]
    first = b"".join(recent.shown(record, lambda writer, seq: None))
    assert record.shown is not None
    assert recent.sizes()["t"] == before + len(record.shown) == record.size
    again = b"".join(recent.shown(record, lambda writer, seq: None))
    assert again == first == record.json(lambda writer, seq: None)
    # Where the view does not fit as the buffer is, it is decoded each time, never kept.
    tight = RecentRecords(["t"], max_records=10, max_bytes=1024)
    other = tight.add(message(0, value=raw, headers=JSON))
    assert other is not None
    shown = b"".join(tight.shown(other, lambda writer, seq: None))
    assert json.loads(shown)["value"]["pad"] == "x" * 400
    assert other.shown is None
    assert tight.sizes()["t"] == other.size <= 1024


def test_unit_records_arriving_out_of_time_order_are_kept_by_time_and_the_oldest_go() -> None:
    # After a rewind the partitions arrive one after another: a later partition's older
    # records come after newer ones, and the bounds still drop the oldest by time.
    recent = RecentRecords(["t"], max_records=4, max_bytes=10**6, clock=lambda: 10.0)
    for offset, stamp in enumerate((500, 600, 700)):
        recent.add(message(offset, partition=0, timestamp_ms=stamp))
    for offset, stamp in enumerate((550, 650, 650, 800)):
        recent.add(message(offset, partition=1, timestamp_ms=stamp))
    kept = [(r.partition, r.offset) for r in recent.query(limit=10)]
    assert kept == [(1, 3), (0, 2), (1, 2), (1, 1)]
