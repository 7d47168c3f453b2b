"""A kept record and its view (app/recent/record.py): how GET /messages shows a record, and
what it costs the buffer's bounds (unit, no broker)."""

import base64
import json

from app.recent.buffer import RecentRecords
from app.recent.record import MessageView
from tests.helpers.recent import JSON, message


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
