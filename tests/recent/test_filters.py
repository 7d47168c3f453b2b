"""The filters of GET /messages (app/recent/filters.py): user, model, text, until, partition and
offset over kept records, as the buffer's query applies them (unit, no broker)."""

import orjson

from app.kafka import KafkaMessage
from app.kafka.schemas import frame
from app.recent.buffer import RecentRecords
from app.recent.filters import RecordFilter
from app.recent.record import RecentRecord

JSON: dict[str, bytes | None] = {"content-type": b"application/json"}


def audit(offset: int, *, user: str, model: str, prompt: str, response: str = "ok") -> KafkaMessage:
    event = {"user_id": user, "model": model, "prompt": prompt, "response": response}
    return KafkaMessage(
        topic="audit",
        partition=offset % 2,
        offset=offset,
        timestamp_ms=1_000 + offset,
        key=user,
        value=orjson.dumps(event),
        headers=JSON,
    )


def kept() -> RecentRecords:
    recent = RecentRecords(["audit", "other"], max_records=100, max_bytes=10**6)
    recent.add(audit(0, user="ann", model="m1", prompt="What is KAFKA?"))
    recent.add(audit(1, user="bob", model="m2", prompt="hello", response="The kafka answer"))
    recent.add(audit(2, user="ann", model="m2", prompt="bye"))
    recent.add(
        KafkaMessage(
            topic="other", partition=0, offset=0, timestamp_ms=1_003, value=b"plain kafka text"
        )
    )
    recent.add(
        KafkaMessage(topic="other", partition=0, offset=1, timestamp_ms=1_004, value=b"[1, 2]")
    )
    return recent


def found(where: RecordFilter, limit: int = 50) -> list[tuple[str, int]]:
    records = kept().query(where, limit=limit)
    return [(r.topic, r.offset) for r in records]


def test_unit_user_and_model_match_the_audit_event_fields() -> None:
    assert found(RecordFilter(user="ann")) == [("audit", 2), ("audit", 0)]
    assert found(RecordFilter(model="m2")) == [("audit", 2), ("audit", 1)]
    assert found(RecordFilter(user="ann", model="m2")) == [("audit", 2)]
    # Records that are not audit events have no user or model: never matched.
    assert found(RecordFilter(user="plain")) == []


def test_unit_text_matches_prompt_or_response_ignoring_case_else_the_value_as_text() -> None:
    assert found(RecordFilter(text="kafka")) == [("other", 0), ("audit", 1), ("audit", 0)]
    assert found(RecordFilter(text="KAFKA", topic="audit")) == [("audit", 1), ("audit", 0)]
    # The user id is not searched: the text filter is about what was said.
    assert found(RecordFilter(text="ann")) == []


def test_unit_until_partition_and_offset_narrow_by_position_and_time() -> None:
    assert found(RecordFilter(until_ms=1_001)) == [("audit", 1), ("audit", 0)]
    assert found(RecordFilter(since_ms=1_001, until_ms=1_002)) == [("audit", 2), ("audit", 1)]
    assert found(RecordFilter(topic="audit", partition=1)) == [("audit", 1)]
    assert found(RecordFilter(topic="audit", partition=0, offset=2)) == [("audit", 2)]


def test_unit_the_limit_counts_records_that_passed() -> None:
    assert found(RecordFilter(user="ann"), limit=1) == [("audit", 2)]


def test_unit_a_value_filter_only_decodes_until_the_limit_is_reached() -> None:
    recent = kept()
    seen: list[int] = []

    class Counting(RecordFilter):
        def passes_value(self, record: RecentRecord) -> bool:
            seen.append(1)
            return super().passes_value(record)

    recent.query(Counting(topic="audit", model="m2"), limit=1)
    assert len(seen) == 1  # the newest audit record passed: nothing older was looked at


def test_unit_only_filters_on_the_value_need_a_second_look() -> None:
    # Topic, key, time, partition and offset are the kept record's fields: checked on every
    # record of the topic. User, model and text decode its value: newest first, up to the limit.
    for cheap in (
        RecordFilter(topic="audit", key="ann", since_ms=1),
        RecordFilter(until_ms=1),
        RecordFilter(partition=0),
        RecordFilter(offset=0),
    ):
        assert not cheap.reads_value, cheap
    for extra in (RecordFilter(user="ann"), RecordFilter(model="m"), RecordFilter(text="t")):
        assert extra.reads_value, extra
    assert not RecordFilter(topic="audit").reads_fields
    for fields in (
        RecordFilter(key="ann"),
        RecordFilter(since_ms=1),
        RecordFilter(until_ms=1),
        RecordFilter(partition=0),
        RecordFilter(offset=0),
    ):
        assert fields.reads_fields, fields


def test_unit_matches_checks_every_filter_as_the_query_does() -> None:
    # GET /messages/stream checks each new record with `matches`: the same nine filters.
    recent = kept()
    records = recent.query(limit=100)
    for where in (
        RecordFilter(),
        RecordFilter(topic="other"),
        RecordFilter(key="ann", model="m2"),
        RecordFilter(text="kafka"),
        RecordFilter(since_ms=1_001, until_ms=1_002, partition=0),
        RecordFilter(topic="audit", offset=1, user="bob"),
    ):
        assert [r for r in records if where.matches(r)] == recent.query(where, limit=100), where


def test_unit_records_in_the_schema_registrys_frame_are_filtered_by_their_event() -> None:
    # With schema contracts on, audit values carry the registry's frame (a zero byte and the
    # schema id) before the event's JSON: user, model and text still find them.
    recent = RecentRecords(["audit"], max_records=100, max_bytes=10**6)
    plain = audit(0, user="ann", model="m1", prompt="What is KAFKA?")
    assert isinstance(plain.value, bytes)
    recent.add(plain.model_copy(update={"offset": 1, "value": frame(3, plain.value)}))
    for where in (RecordFilter(user="ann"), RecordFilter(model="m1"), RecordFilter(text="kafka")):
        assert [r.offset for r in recent.query(where)] == [1], where
