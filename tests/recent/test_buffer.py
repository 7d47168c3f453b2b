"""The recent-records buffer: bounds, filters, order, views and subscribers (unit, no broker)."""

import asyncio
import base64
import json

from app.kafka import KafkaMessage
from app.recent.buffer import MessageView, RecentRecords

JSON: dict[str, bytes | None] = {"content-type": b"application/json"}


def message(
    offset: int,
    *,
    topic: str = "t",
    partition: int = 0,
    key: str | bytes | None = "k",
    value: object = "v",
    timestamp_ms: int | None = None,
    headers: dict[str, bytes | None] | None = None,
) -> KafkaMessage:
    return KafkaMessage(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=1_000 + offset if timestamp_ms is None else timestamp_ms,
        key=key,
        value=value,
        headers=headers or {},
    )


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

    def offsets(**filters: object) -> list[tuple[str, int]]:
        return [(r.topic, r.offset) for r in recent.query(**filters)]  # type: ignore[arg-type]

    assert offsets() == [("a", 2), ("b", 0), ("a", 1), ("a", 0)]
    assert offsets(topic="a") == [("a", 2), ("a", 1), ("a", 0)]
    assert offsets(key="u2") == [("b", 0), ("a", 1)]
    assert offsets(since_ms=200) == [("a", 2), ("b", 0), ("a", 1)]
    assert offsets(limit=2) == [("a", 2), ("b", 0)]
    assert offsets(topic="b", key="u1") == []


def test_the_view_says_how_the_value_is_encoded() -> None:
    def view(**fields: object) -> MessageView:
        return MessageView.of(message(0, **fields))  # type: ignore[arg-type]

    assert view(value={"a": 1}, headers=JSON).value_encoding == "json"
    assert view(value="hello").value_encoding == "text"
    assert view(value=None).value_encoding == "tombstone"
    binary = view(value=b"\xff\x00")
    assert binary.value_encoding == "base64"
    assert base64.b64decode(binary.value) == b"\xff\x00"
    odd = view(key=b"\xffk", headers={"h": b"\xfe", "n": None})
    assert odd.key == "\\xffk"
    assert odd.headers == {"h": "\\xfe", "n": None}
    assert view(timestamp_ms=0).timestamp_utc == "1970-01-01T00:00:00.000000Z"


def test_json_nested_deeper_than_orjson_writes_is_shown_as_its_text() -> None:
    # orjson reads 1,024 levels and writes 255: the view (GET /messages, the stream) used to
    # raise TypeError for one such record.
    raw = b"[" * 300 + b"]" * 300
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    record = recent.add(message(0, value=raw, headers=JSON))
    assert record is not None
    view = json.loads(record.json(lambda writer, seq: None))
    assert (view["value"], view["value_encoding"]) == (raw.decode(), "text")
    shown = json.loads(b"".join(recent.shown(record, lambda writer, seq: None)))
    assert shown["value"] == raw.decode()


def test_a_timestamp_beyond_the_calendar_shows_no_utc_time() -> None:
    # Any producer may stamp a record with up to 2**63 - 1 ms; the reader must still show it.
    for timestamp_ms in (2**63 - 1, 253_402_300_800_000):
        view = MessageView.of(message(0, timestamp_ms=timestamp_ms))
        assert view.timestamp_ms == timestamp_ms
        assert view.timestamp_utc is None
    last = MessageView.of(message(0, timestamp_ms=253_402_300_799_999))
    assert last.timestamp_utc == "9999-12-31T23:59:59.999000Z"


def test_the_kept_json_is_the_view() -> None:
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    record = recent.add(message(7, value={"a": [1, 2]}, headers=JSON))
    assert record is not None
    assert json.loads(record.json(lambda writer, seq: None)) == MessageView.of(
        message(7, value={"a": [1, 2]}, headers=JSON)
    ).model_dump(mode="json")


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


def test_unit_an_audit_record_shows_its_writer_and_seq() -> None:
    writer = "0123456789abcdef0123456789abcdef"
    chained = {**JSON, "rg-writer": writer.encode(), "rg-seq": b"41"}
    view = MessageView.of(message(0, value={"a": 1}, headers=chained))
    assert (view.writer, view.seq) == (writer, 41)
    # Not an audit record, or headers not well formed: nothing is guessed.
    for headers in (
        JSON,
        {**chained, "rg-seq": b"041"},
        {**chained, "rg-seq": b"-1"},
        {**chained, "rg-writer": b"XYZ"},
        {**JSON, "rg-writer": writer.encode()},
    ):
        view = MessageView.of(message(0, value={"a": 1}, headers=headers))
        assert (view.writer, view.seq) == (None, None), headers


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


def test_unit_checkpointed_is_what_the_coverage_says_when_the_record_is_served() -> None:
    writer = "0123456789abcdef0123456789abcdef"
    chained = {**JSON, "rg-writer": writer.encode(), "rg-seq": b"5"}
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6, audit_topic="t")
    audit = recent.add(message(0, value={"a": 1}, headers=chained))
    other = recent.add(message(1, value={"a": 1}, headers=JSON))
    assert audit is not None
    assert other is not None
    asked: list[tuple[str, int]] = []
    head = -1

    def coverage(writer: str, seq: int) -> bool | None:
        asked.append((writer, seq))
        return seq <= head

    assert json.loads(audit.json(coverage))["checkpointed"] is False
    head = 5  # a checkpoint covering seq 5 written since: the same kept record says so now
    shown = json.loads(audit.json(coverage))
    assert shown["checkpointed"] is True
    assert shown == {
        **MessageView.of(message(0, value={"a": 1}, headers=chained)).model_dump(mode="json"),
        "checkpointed": True,
    }
    assert json.loads(audit.json(lambda writer, seq: None))["checkpointed"] is None
    # No writer and seq: null, and the coverage is not asked.
    assert json.loads(other.json(coverage))["checkpointed"] is None
    assert asked == [(writer, 5), (writer, 5)]


def test_unit_records_are_kept_as_read_and_decoded_when_served() -> None:
    # The reader reads with value_format="bytes": nothing is decoded until a record is shown.
    recent = RecentRecords(["t"], max_records=10, max_bytes=10**6)
    raw = b'{"b": [1, 2], "a": "\\u00e9"}'
    record = recent.add(message(3, key=b"k", value=raw, headers=JSON))
    assert record is not None
    assert record.value is raw
    assert record.headers == JSON
    # The bound counts the bytes kept (value, key, headers) and a fixed allowance.
    assert record.size > len(raw) + len("k") + len("content-type") + len(b"application/json")
    assert record.size < len(raw) + 1000
    shown = json.loads(record.json(lambda writer, seq: None))
    assert shown["value"] == {"b": [1, 2], "a": "é"}
    assert shown["value_encoding"] == "json"
    assert shown == {
        **MessageView.of(message(3, key=b"k", value=raw, headers=JSON)).model_dump(mode="json"),
        "checkpointed": None,
    }
    # Unmarked UTF-8 is shown as text, bytes that are not UTF-8 as base64.
    for offset, value, encoding in ((4, b"{not json", "text"), (5, b"\xff\x00", "base64")):
        kept = recent.add(message(offset, value=value))
        assert kept is not None
        assert json.loads(kept.json(lambda writer, seq: None))["value_encoding"] == encoding


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
