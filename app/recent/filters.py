"""The filters of GET /messages and /messages/stream: topic, key and time, and what the /ui page
lets an operator narrow the recent records by (docs/ui.md).

`RecordFilter` looks into a record only as far as it must: topic, partition, offset, key and
timestamp are fields of the kept record (`passes_fields`); user, model and text need its value,
which the buffer keeps undecoded (app/recent/buffer.py), so a record is decoded
(`passes_value`) only when one of those is asked for and the cheap checks passed. An audit
record's value is the stored event (`user_id`, `model`, `prompt`, `response`); text matches a
case-insensitive substring of its prompt or response. Any other record matches user and model
never, and text in its value as text.
"""

from dataclasses import dataclass
from typing import Any

import orjson

from app.kafka.serde import CONTENT_TYPE, JSON_CONTENT_TYPE, unframed
from app.recent.record import RecentRecord

# The fields of an audit event the text filter looks in.
_TEXT_FIELDS = ("prompt", "response")


@dataclass(frozen=True)
class RecordFilter:
    """Every filter of GET /messages, checked already (None = not asked for). `until_ms` is
    inclusive, like `since_ms`."""

    topic: str | None = None
    key: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    partition: int | None = None
    offset: int | None = None
    user: str | None = None
    model: str | None = None
    text: str | None = None

    @property
    def reads_fields(self) -> bool:
        """True when a filter on a record's kept fields (beyond its topic) is asked for: key,
        since, until, partition or offset."""
        return not (
            self.key is None
            and self.since_ms is None
            and self.until_ms is None
            and self.partition is None
            and self.offset is None
        )

    @property
    def reads_value(self) -> bool:
        """True when a record's value must be decoded to tell (user, model or text)."""
        return self.user is not None or self.model is not None or self.text is not None

    def matches(self, record: RecentRecord) -> bool:
        """Whether `record` passes every filter asked for."""
        return (
            (self.topic is None or record.topic == self.topic)
            and self.passes_fields(record)
            and self.passes_value(record)
        )

    def passes_fields(self, record: RecentRecord) -> bool:
        """Whether `record` passes key, since, until, partition and offset: its kept fields,
        nothing decoded (the buffer picks the records of the topic asked for itself)."""
        return (
            (self.key is None or record.key == self.key)
            and (
                self.since_ms is None
                or (record.timestamp_ms is not None and record.timestamp_ms >= self.since_ms)
            )
            and (
                self.until_ms is None
                or (record.timestamp_ms is not None and record.timestamp_ms <= self.until_ms)
            )
            and (self.partition is None or record.partition == self.partition)
            and (self.offset is None or record.offset == self.offset)
        )

    def passes_value(self, record: RecentRecord) -> bool:
        """Whether `record` passes user, model and text, decoding its value when one of them is
        asked for."""
        if not self.reads_value:
            return True
        event = _event_of(record)
        if self.user is not None and (event is None or event.get("user_id") != self.user):
            return False
        if self.model is not None and (event is None or event.get("model") != self.model):
            return False
        if self.text is not None:
            needle = self.text.casefold()
            if event is not None:
                texts = [event.get(name) for name in _TEXT_FIELDS]
                haystack = [t for t in texts if isinstance(t, str)]
            else:
                raw = record.value or b""
                haystack = [raw.decode("utf-8", "replace")]
            if not any(needle in text.casefold() for text in haystack):
                return False
        return True


# The filter every record passes.
EVERY_RECORD = RecordFilter()


def _event_of(record: RecentRecord) -> dict[str, Any] | None:
    # A JSON object marked as JSON (what an audit record is); anything else has no fields.
    if record.value is None:
        return None
    content_type = record.headers.get(CONTENT_TYPE) or b""
    if not content_type.startswith(JSON_CONTENT_TYPE.encode()):
        return None
    try:
        value = orjson.loads(unframed(record.value))
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
