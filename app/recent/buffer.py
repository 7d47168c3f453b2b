"""The recent-records buffer behind `GET /messages`: per topic, bounded in records and bytes,
newest first, with live subscribers for `GET /messages/stream`.

A record is kept as it came from Kafka: its value, key and headers as raw bytes, nothing
decoded. The reader fills the buffer with every record of the topics (after a reconnect it
re-reads as many again), and most are never asked for: decoding each on arrival (the JSON value
parsed, the view built and encoded) cost about a tenth of the service's CPU under a write load.
A record is decoded when it is served (`RecentRecord.json(coverage)`), with `checkpointed` as
the checkpoints written so far say; GET /messages keeps the view's JSON of a record it showed
(`RecentRecords.shown`), so showing it again costs a copy, as long as that fits in the byte
bound. The bounds count the bytes kept (as read, and views kept), plus a fixed allowance per
record and per header for the objects holding them.

A stream subscriber's backlog (records kept since it subscribed that it has not sent yet) holds
records the buffer may have evicted already, so it is bounded too: at most 1,000 records and
`RG_MESSAGES_BUFFER_BYTES` bytes (one topic's buffer) per subscriber. Past either the subscriber
is cut off: its backlog is dropped at once (a client that stopped reading pins nothing more),
and its stream ends with an `overflow` event.
"""

import asyncio
import base64
import bisect
import collections
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from app.kafka import KafkaMessage
from app.kafka.audit import SEQ_HEADER, WRITER_HEADER
from app.kafka.models import utc_of_epoch_ms
from app.kafka.schemas import schema_id_of
from app.kafka.serde import CONTENT_TYPE, JSON_CONTENT_TYPE, decode_value

# Per-record bookkeeping (the entry, its list slot, the headers' dict) on top of its bytes, and
# per header (the dict slot, the bytes objects).
_ENTRY_OVERHEAD = 300
_HEADER_OVERHEAD = 64
_SUBSCRIBER_RECORDS = 1000
_WRITER = re.compile(r"[0-9a-f]{32}")
_SEQ = re.compile(r"0|[1-9][0-9]*")
# The end of a record's JSON for each answer of the coverage (replacing its closing brace).
_CHECKPOINTED = {
    True: b',"checkpointed":true}',
    False: b',"checkpointed":false}',
    None: b',"checkpointed":null}',
}

# Whether a signed checkpoint covers position `seq` of `writer`: None when unknown.
Coverage = Callable[[str, int], bool | None]


class MessageView(BaseModel):
    """A record as `GET /messages` shows it. `value` is the decoded JSON when the record is
    marked `content-type: application/json`, else text, else base64 (`value_encoding` says
    which); a key or header that is not UTF-8 is shown with `\\x..` escapes."""

    topic: str = Field(examples=["ractogateway.audit"])
    partition: int = Field(examples=[0])
    offset: int = Field(examples=[42])
    timestamp_ms: int | None = Field(examples=[1790000000000])
    timestamp_utc: str | None = Field(examples=["2026-09-21T12:00:00.000000Z"])
    key: str | None = Field(examples=["user-42"])
    value: Any = Field(examples=[{"user_id": "user-42", "model": "gpt-4o"}])
    value_encoding: Literal["json", "text", "base64", "tombstone"]
    headers: dict[str, str | None] = Field(examples=[{"content-type": "application/json"}])
    writer: str | None = Field(
        default=None,
        examples=["0123456789abcdef0123456789abcdef"],
        description="For an audit record: the writer whose hash chain holds it (rg-writer).",
    )
    seq: int | None = Field(
        default=None,
        examples=[41],
        description="For an audit record: its position on its writer's chain (rg-seq).",
    )
    schema_id: int | None = Field(
        default=None,
        examples=[7],
        description="For a value in the Confluent wire format (RG_SCHEMA_WIRE_FORMAT=confluent): "
        "the Schema Registry's id of its schema; `value` is the JSON after the 5-byte header.",
    )
    schema_version: int | None = Field(
        default=None,
        examples=[2],
        description="The version of that schema under its subject, when the registry told.",
    )
    checkpointed: bool | None = Field(
        default=None,
        examples=[True],
        description=(
            "For an audit record: true once a signed checkpoint this service knows covers its "
            "seq (its own, or one read from the checkpoints topic whose signature verifies with "
            "a key of GET /audit/keys), false while the checkpoints known of its writer stop "
            "below it. null when unknown: no signing key, no checkpoint known of its writer, "
            "or not an audit record. Worked out when the record is served."
        ),
    )

    @classmethod
    def of(cls, message: KafkaMessage) -> "MessageView":
        """The view of a record read with `value_format="bytes"` (or `"auto"`: a value still in
        bytes then is neither JSON nor text, and decoding it again changes nothing)."""
        return cls(
            **view_fields(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                timestamp_ms=message.timestamp_ms,
                key=_shown_key(message.key),
                value=message.value,
                headers=message.headers,
            )
        )


def view_fields(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: str | None,
    value: Any,
    headers: Mapping[str, bytes | None],
    schema_versions: Mapping[int, int] | None = None,
    chained: bool = True,
) -> dict[str, Any]:
    """A `MessageView`'s fields, in its order and without `checkpointed`, as JSON types: a
    value in bytes is decoded as `value_format="auto"` says (JSON when marked
    `content-type: application/json`, else UTF-8 text, else base64); a framed value's schema id
    is shown, with its version when `schema_versions` knows it; `writer` and `seq` only when
    `chained` (a record of the audit topic)."""
    schema_id = None
    if isinstance(value, bytes):
        schema_id = schema_id_of(value)
        value = decode_value(value, headers, "auto")
    encoding: Literal["json", "text", "base64", "tombstone"]
    if value is None:
        encoding = "tombstone"
    elif isinstance(value, bytes):
        value, encoding = base64.b64encode(value).decode("ascii"), "base64"
    elif (headers.get(CONTENT_TYPE) or b"").startswith(JSON_CONTENT_TYPE.encode()):
        encoding = "json"
    else:
        encoding = "text"
    writer, seq = _chain_place(headers) if chained else (None, None)
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": timestamp_ms,
        "timestamp_utc": utc_of_epoch_ms(timestamp_ms) if timestamp_ms is not None else None,
        "key": key,
        "value": value,
        "value_encoding": encoding,
        "headers": {
            name: raw.decode("utf-8", "backslashreplace") if raw is not None else None
            for name, raw in headers.items()
        },
        "writer": writer,
        "seq": seq,
        "schema_id": schema_id,
        "schema_version": (schema_versions or {}).get(schema_id) if schema_id is not None else None,
    }


def _shown_key(key: str | bytes | None) -> str | None:
    return key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key


def _chain_place(headers: Mapping[str, bytes | None]) -> tuple[str | None, int | None]:
    # Shown only when both headers are well formed (docs/integrity.md); anything else is the
    # verifier's to report, not the view's to guess.
    writer, seq = _text(headers.get(WRITER_HEADER)), _text(headers.get(SEQ_HEADER))
    if writer is None or seq is None or not _WRITER.fullmatch(writer) or not _SEQ.fullmatch(seq):
        return None, None
    return writer, int(seq)


def _text(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", errors="replace") if raw is not None else None


@dataclass(slots=True, eq=False)
class RecentRecord:
    """One kept record: the fields the filters look at, and its value and headers as read
    (bytes, decoded only when the record is served)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: str | None
    value: bytes | None
    headers: dict[str, bytes | None]
    # What the record counts against the byte bound.
    size: int
    # Its view's JSON without `checkpointed`, kept once GET /messages has shown it (and
    # counted in `size`): see `RecentRecords.shown`.
    shown: bytes | None = None
    # Its place on a writer's chain, worked out with `shown`.
    writer: str | None = None
    seq: int | None = None
    # A record of the audit topic: only those show a place on a chain (`rg-writer`, `rg-seq`).
    # Records of other topics may carry any headers their publisher chose.
    chained: bool = False
    # Its timestamp for ordering, at most the time it was read: a record stamped in the future
    # is not newer than the records read after it (and cannot push them out).
    rank_ms: int = 0

    @property
    def order(self) -> tuple[int, int, int]:
        """Oldest first: by timestamp (capped at the time read), then partition and offset."""
        return (self.rank_ms, self.partition, self.offset)

    def chain_place(self) -> tuple[str | None, int | None]:
        """Its writer and seq: from its headers for a record of the audit topic, else none."""
        return _chain_place(self.headers) if self.chained else (None, None)

    def view_json(self, schema_versions: Mapping[int, int] | None = None) -> bytes:
        """The record's `MessageView` as JSON, without `checkpointed`: decoded now unless
        kept from an earlier answer."""
        if self.shown is not None:
            return self.shown
        fields = view_fields(
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            timestamp_ms=self.timestamp_ms,
            key=self.key,
            value=self.value,
            headers=self.headers,
            schema_versions=schema_versions,
            chained=self.chained,
        )
        # orjson: pydantic's JSON of a 0.5 MB value takes 1 ms of the event loop; the values
        # are decoded JSON or text, all of which orjson writes, except JSON nested deeper than
        # orjson writes (255 levels; it reads up to 1,024): that one is shown as its text.
        try:
            return orjson.dumps(fields)
        except orjson.JSONEncodeError:
            fields.update(_as_text(self.value))
            return orjson.dumps(fields)

    def json_parts(
        self, coverage: Coverage, schema_versions: Mapping[int, int] | None = None
    ) -> tuple[memoryview, bytes]:
        """The record as `GET /messages` shows it (a `MessageView`), with `checkpointed` as
        `coverage` says now (null without a writer and seq), in two pieces to join: a
        memoryview, so the view is copied once, by the join of the whole answer."""
        if self.shown is not None:
            writer, seq = self.writer, self.seq
        else:
            writer, seq = self.chain_place()
        covered = None if writer is None or seq is None else coverage(writer, seq)
        return memoryview(self.view_json(schema_versions))[:-1], _CHECKPOINTED[covered]

    def json(self, coverage: Coverage, schema_versions: Mapping[int, int] | None = None) -> bytes:
        """The record's JSON as `GET /messages` shows it (see `json_parts`)."""
        return b"".join(self.json_parts(coverage, schema_versions))

    def matches(self, *, topic: str | None, key: str | None, since_ms: int | None) -> bool:
        """True when the record passes the filters of `GET /messages`."""
        return (
            (topic is None or self.topic == topic)
            and (key is None or self.key == key)
            and (
                since_ms is None
                or (self.timestamp_ms is not None and self.timestamp_ms >= since_ms)
            )
        )


class Subscription:
    """A stream subscriber's backlog: the records kept since it subscribed that it has not
    taken yet, at most `max_records` and `max_bytes` (their sizes as counted in the buffer).
    Past either it is cut off: the backlog is dropped and `get()` returns None from then on."""

    def __init__(self, *, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._backlog: collections.deque[tuple[RecentRecord, int]] = collections.deque()
        self.size = 0
        self.cut = False
        self._more = asyncio.Event()

    def __len__(self) -> int:
        return len(self._backlog)

    def put(self, record: RecentRecord) -> bool:
        """Add `record` to the backlog; False when that cut the subscriber off (or it was)."""
        if self.cut:
            return False
        if len(self._backlog) >= self.max_records or self.size + record.size > self.max_bytes:
            self.cut_off()
            return False
        self._backlog.append((record, record.size))
        self.size += record.size
        self._more.set()
        return True

    def cut_off(self) -> None:
        """Drop the backlog; `get()` returns None from now on."""
        self.cut = True
        self._backlog.clear()
        self.size = 0
        self._more.set()

    async def get(self) -> RecentRecord | None:
        """The next record of the backlog, waiting for one; None once cut off."""
        while not self._backlog:
            if self.cut:
                return None
            self._more.clear()
            await self._more.wait()
        record, size = self._backlog.popleft()
        self.size -= size
        return record


@dataclass
class _TopicRecords:
    # Sorted by `RecentRecord.order`: after a rewind the partitions arrive one after another,
    # so arrival order is not age, and the bounds must drop the oldest by time.
    records: list[RecentRecord] = field(default_factory=list)
    size: int = 0


class RecentRecords:
    """Keeps the newest records of each topic: at most `max_records` and `max_bytes` per
    topic, dropping the oldest (by record timestamp, capped at the time it was read) first. A
    record re-read after the reader reconnects (same partition and offset, or older) is
    ignored, so nothing shows twice. Only records of `audit_topic` show a place on a writer's
    chain."""

    def __init__(
        self,
        topics: Iterable[str],
        *,
        max_records: int,
        max_bytes: int,
        audit_topic: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.audit_topic = audit_topic
        self._clock = clock
        self._topics = {topic: _TopicRecords() for topic in topics}
        self._next_offset: dict[tuple[str, int], int] = {}
        self._subscribers: set[Subscription] = set()
        # Stream subscribers cut off for falling behind (`rg_messages_stream_cut_total`), and
        # streams closed for not reading (`rg_messages_stream_send_timeouts_total`).
        self.subscribers_cut = 0
        self.streams_timed_out = 0
        # Records not kept, by reason (`rg_messages_records_skipped_total`): `oversized` (alone
        # above `max_bytes`), `failed` (taking it in raised: the reader counts and skips it).
        self.skipped: collections.Counter[str] = collections.Counter()
        # Schema id -> its version, as the reader learnt it from the registry (framed values).
        self.schema_versions: dict[int, int] = {}

    @property
    def dropped_oversized(self) -> int:
        """Records not kept because each alone was above `max_bytes`."""
        return self.skipped["oversized"]

    @property
    def topics(self) -> list[str]:
        """The topics kept."""
        return list(self._topics)

    def add(self, message: KafkaMessage) -> RecentRecord | None:
        """Keep `message` (read with `value_format="bytes"`: kept as read, see the module
        docstring), evicting the oldest beyond the bounds, and pass it to subscribers; None
        when it was ignored (another topic, already seen, or alone above `max_bytes`)."""
        kept = self._topics.get(message.topic)
        place = (message.topic, message.partition)
        if kept is None or message.offset < self._next_offset.get(place, 0):
            return None
        self._next_offset[place] = message.offset + 1
        value = _raw(message.value)
        key = _shown_key(message.key)
        headers = message.headers
        record = RecentRecord(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=message.timestamp_ms,
            key=key,
            value=value,
            headers=headers,
            chained=message.topic == self.audit_topic,
            rank_ms=min(message.timestamp_ms or 0, int(self._clock() * 1000)),
            size=_ENTRY_OVERHEAD
            + len(value or b"")
            + len(key or "")
            + sum(len(name) + len(raw or b"") + _HEADER_OVERHEAD for name, raw in headers.items()),
        )
        if record.size > self.max_bytes:
            self.skipped["oversized"] += 1
            return None
        bisect.insort(kept.records, record, key=lambda r: r.order)
        kept.size += record.size
        while len(kept.records) > self.max_records or kept.size > self.max_bytes:
            kept.size -= kept.records.pop(0).size
        self._publish(record)
        return record

    def query(
        self,
        *,
        topic: str | None = None,
        key: str | None = None,
        since_ms: int | None = None,
        limit: int = 50,
        where: Callable[[RecentRecord], bool] | None = None,
    ) -> list[RecentRecord]:
        """The newest `limit` records passing the filters (and `where`, checked newest first
        and only until `limit` passed: it may decode values, app/recent/filters.py), newest
        first (by timestamp, then partition and offset)."""
        found = [
            record
            for name, kept in self._topics.items()
            if topic is None or name == topic
            for record in kept.records
            if record.matches(topic=topic, key=key, since_ms=since_ms)
        ]
        found.sort(key=lambda r: r.order, reverse=True)
        if where is None:
            return found[:limit]
        passed: list[RecentRecord] = []
        for record in found:
            if len(passed) >= limit:
                break
            if where(record):
                passed.append(record)
        return passed

    def shown(self, record: RecentRecord, coverage: Coverage) -> tuple[memoryview, bytes]:
        """`record.json_parts(coverage)` for GET /messages, keeping the view's JSON with the record
        when it fits in the byte bound as it is (nothing is evicted for it): a record shown
        once is decoded once, whatever is never shown is never decoded. Only for a record
        `query()` returned with no await since (so it is still kept)."""
        if record.shown is None:
            kept = self._topics.get(record.topic)
            body = record.view_json(self.schema_versions)
            if kept is not None and kept.size + len(body) <= self.max_bytes:
                record.writer, record.seq = record.chain_place()
                record.shown = body
                record.size += len(body)
                kept.size += len(body)
        return record.json_parts(coverage, self.schema_versions)

    def counts(self) -> dict[str, float]:
        """Records kept, per topic."""
        return {topic: len(kept.records) for topic, kept in self._topics.items()}

    def sizes(self) -> dict[str, float]:
        """Bytes kept, per topic."""
        return {topic: kept.size for topic, kept in self._topics.items()}

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """The backlog of every record kept from now on. A subscriber that falls more than
        1,000 records or `max_bytes` bytes behind is cut off: its backlog is dropped and it
        gets None (then nothing more): it should reconnect."""
        subscription = Subscription(max_records=_SUBSCRIBER_RECORDS, max_bytes=self.max_bytes)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    def _publish(self, record: RecentRecord) -> None:
        for subscription in list(self._subscribers):
            if not subscription.put(record):
                # Too slow: cut off rather than hold a backlog outside the buffer's bounds.
                self._subscribers.discard(subscription)
                self.subscribers_cut += 1


def _as_text(value: bytes | None) -> dict[str, Any]:
    # A value shown as it is rather than decoded: UTF-8 text, else base64.
    raw = value or b""
    try:
        return {"value": raw.decode("utf-8"), "value_encoding": "text"}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(raw).decode("ascii"), "value_encoding": "base64"}


def _raw(value: Any) -> bytes | None:
    # The reader's records hold bytes; a value decoded already (a record read with
    # `value_format="auto"`) is kept as the bytes it came from, near enough: text as UTF-8,
    # anything else as JSON.
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return orjson.dumps(value)
