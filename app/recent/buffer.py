"""The recent-records buffer behind `GET /messages`: per topic, bounded in records and bytes,
newest first, with live subscribers for `GET /messages/stream`.

A record is kept as its JSON (orjson, once, when it is read) without `checkpointed`: whether a
signed checkpoint covers an audit record changes as checkpoints are written, so `RecentRecord.
json(coverage)` adds it when the record is served.
"""

import asyncio
import base64
import bisect
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from app.kafka import KafkaMessage
from app.kafka.audit import SEQ_HEADER, WRITER_HEADER
from app.kafka.models import utc_of_epoch_ms

# Per-record bookkeeping (the entry, deque slot, index fields) on top of its JSON.
_ENTRY_OVERHEAD = 200
_SUBSCRIBER_QUEUE = 1000
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
        """The view of a record read with `value_format="auto"`."""
        value = message.value
        encoding: Literal["json", "text", "base64", "tombstone"]
        if value is None:
            encoding = "tombstone"
        elif isinstance(value, bytes):
            value, encoding = base64.b64encode(value).decode("ascii"), "base64"
        elif (message.header("content-type") or "").startswith("application/json"):
            encoding = "json"
        else:
            encoding = "text"
        key = message.key
        writer, seq = _chain_place(message)
        return cls(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=message.timestamp_ms,
            timestamp_utc=(
                utc_of_epoch_ms(message.timestamp_ms) if message.timestamp_ms is not None else None
            ),
            key=key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key,
            value=value,
            value_encoding=encoding,
            headers={
                name: raw.decode("utf-8", "backslashreplace") if raw is not None else None
                for name, raw in message.headers.items()
            },
            writer=writer,
            seq=seq,
        )


def _chain_place(message: KafkaMessage) -> tuple[str | None, int | None]:
    # Shown only when both headers are well formed (docs/integrity.md); anything else is the
    # verifier's to report, not the view's to guess.
    writer, seq = message.header(WRITER_HEADER), message.header(SEQ_HEADER)
    if writer is None or seq is None or not _WRITER.fullmatch(writer) or not _SEQ.fullmatch(seq):
        return None, None
    return writer, int(seq)


@dataclass(frozen=True, slots=True)
class RecentRecord:
    """One kept record: the fields the filters look at, and its JSON (a `MessageView`)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: str | None
    # The MessageView's JSON without `checkpointed` (see `json`).
    body: bytes
    writer: str | None = None
    seq: int | None = None

    @property
    def order(self) -> tuple[int, int, int]:
        """Oldest first: by timestamp, then partition and offset."""
        return (self.timestamp_ms or 0, self.partition, self.offset)

    @property
    def size(self) -> int:
        """What the record counts against the byte bound."""
        return len(self.body) + _ENTRY_OVERHEAD

    def json_parts(self, coverage: Coverage) -> tuple[memoryview, bytes]:
        """The record as `GET /messages` shows it, in two pieces to join: its JSON with
        `checkpointed` as `coverage` says now (null without a writer and seq). A memoryview, so
        a large value is copied once, by the join of the whole answer."""
        covered = (
            None if self.writer is None or self.seq is None else coverage(self.writer, self.seq)
        )
        return memoryview(self.body)[:-1], _CHECKPOINTED[covered]

    def json(self, coverage: Coverage) -> bytes:
        """The record's JSON as `GET /messages` shows it (see `json_parts`)."""
        return b"".join(self.json_parts(coverage))

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


@dataclass
class _TopicRecords:
    # Sorted by `RecentRecord.order`: after a rewind the partitions arrive one after another,
    # so arrival order is not age, and the bounds must drop the oldest by time.
    records: list[RecentRecord] = field(default_factory=list)
    size: int = 0


class RecentRecords:
    """Keeps the newest records of each topic: at most `max_records` and `max_bytes` per
    topic, dropping the oldest (by record timestamp) first. A record re-read after the reader
    reconnects (same partition and offset, or older) is ignored, so nothing shows twice."""

    def __init__(self, topics: Iterable[str], *, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._topics = {topic: _TopicRecords() for topic in topics}
        self._next_offset: dict[tuple[str, int], int] = {}
        self._subscribers: set[asyncio.Queue[RecentRecord | None]] = set()
        self.dropped_oversized = 0

    @property
    def topics(self) -> list[str]:
        """The topics kept."""
        return list(self._topics)

    def add(self, message: KafkaMessage) -> RecentRecord | None:
        """Keep `message` (evicting the oldest beyond the bounds) and pass it to subscribers;
        None when it was ignored (another topic, already seen, or alone above `max_bytes`)."""
        kept = self._topics.get(message.topic)
        place = (message.topic, message.partition)
        if kept is None or message.offset < self._next_offset.get(place, 0):
            return None
        self._next_offset[place] = message.offset + 1
        view = MessageView.of(message)
        record = RecentRecord(
            topic=view.topic,
            partition=view.partition,
            offset=view.offset,
            timestamp_ms=view.timestamp_ms,
            key=view.key,
            # orjson: pydantic's JSON of a 0.5 MB value takes 1 ms of the event loop (and a
            # str copy to encode again); the values are decoded JSON or text, all orjson writes.
            body=orjson.dumps(view.model_dump(exclude={"checkpointed"})),
            writer=view.writer,
            seq=view.seq,
        )
        if record.size > self.max_bytes:
            self.dropped_oversized += 1
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
    ) -> list[RecentRecord]:
        """The newest `limit` records passing the filters, newest first (by timestamp, then
        partition and offset)."""
        found = [
            record
            for name, kept in self._topics.items()
            if topic is None or name == topic
            for record in kept.records
            if record.matches(topic=topic, key=key, since_ms=since_ms)
        ]
        found.sort(key=lambda r: r.order, reverse=True)
        return found[:limit]

    def counts(self) -> dict[str, float]:
        """Records kept, per topic."""
        return {topic: len(kept.records) for topic, kept in self._topics.items()}

    def sizes(self) -> dict[str, float]:
        """Bytes kept, per topic."""
        return {topic: kept.size for topic, kept in self._topics.items()}

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator["asyncio.Queue[RecentRecord | None]"]:
        """A queue of every record kept from now on. A subscriber that falls more than
        1,000 records behind gets None (then nothing more): it should reconnect."""
        queue: asyncio.Queue[RecentRecord | None] = asyncio.Queue(_SUBSCRIBER_QUEUE + 1)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _publish(self, record: RecentRecord) -> None:
        for queue in list(self._subscribers):
            if queue.qsize() >= _SUBSCRIBER_QUEUE:
                # Too slow: cut it off rather than hold an unbounded backlog for it.
                self._subscribers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(record)
