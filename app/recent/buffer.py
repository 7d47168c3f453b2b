"""The recent-records buffer behind `GET /messages`: per topic, bounded in records and bytes,
newest first, with live subscribers for `GET /messages/stream`.

A record is kept as it came from Kafka: its value, key and headers as raw bytes, nothing
decoded. The reader fills the buffer with every record of the topics (after a reconnect it
re-reads as many again), and most are never asked for: decoding each on arrival (the JSON value
parsed, the view built and encoded) cost about a tenth of the service's CPU under a write load.
A record is decoded when it is served (`RecentRecord.json(coverage)`, app/recent/record.py),
with `checkpointed` as the checkpoints written so far say; GET /messages keeps the view's JSON
of a record it showed (`RecentRecords.shown`), so showing it again costs a copy, as long as that
fits in the byte bound. The bounds count the bytes kept (as read, and views kept), plus a fixed
allowance per record and per header for the objects holding them.

A stream subscriber's backlog (records kept since it subscribed that it has not sent yet) holds
records the buffer may have evicted already, so it is bounded too: at most 1,000 records and
`RG_MESSAGES_BUFFER_BYTES` bytes (one topic's buffer) per subscriber. Past either the subscriber
is cut off: its backlog is dropped at once (a client that stopped reading pins nothing more),
and its stream ends with an `overflow` event.
"""

import asyncio
import bisect
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from app.kafka import KafkaMessage
from app.recent.filters import EVERY_RECORD, RecordFilter
from app.recent.record import Coverage, RecentRecord

_SUBSCRIBER_RECORDS = 1000


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
        # RG_ERASURE=on: a view's JSON with its sealed fields opened (or marked erased).
        self.opener: Callable[[bytes], bytes] | None = None

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
        record = RecentRecord.of(
            message,
            chained=message.topic == self.audit_topic,
            rank_ms=min(message.timestamp_ms or 0, int(self._clock() * 1000)),
        )
        if record.size > self.max_bytes:
            self.skipped["oversized"] += 1
            return None
        records = kept.records
        if not records or records[-1].order <= record.order:
            records.append(record)  # the common case: newer than every record kept
        else:
            bisect.insort(records, record, key=lambda r: r.order)
        kept.size += record.size
        while len(kept.records) > self.max_records or kept.size > self.max_bytes:
            kept.size -= kept.records.pop(0).size
        self._publish(record)
        return record

    def query(self, where: RecordFilter = EVERY_RECORD, *, limit: int = 50) -> list[RecentRecord]:
        """The newest `limit` records passing `where`, newest first (by timestamp, then
        partition and offset). The filters on a record's fields are checked on every record of
        the topics asked for; those that decode its value (user, model, text) newest first and
        only until `limit` passed."""
        topics = [
            kept.records
            for name, kept in self._topics.items()
            if where.topic is None or name == where.topic
        ]
        if where.reads_fields:
            found = [
                record for records in topics for record in records if where.passes_fields(record)
            ]
        else:  # no filter beyond the topic (the common page): no call per record
            found = [record for records in topics for record in records]
        found.sort(key=lambda r: r.order, reverse=True)
        if not where.reads_value:
            return found[:limit]
        passed: list[RecentRecord] = []
        for record in found:
            if len(passed) >= limit:
                break
            if where.passes_value(record):
                passed.append(record)
        return passed

    def page(self, where: RecordFilter, *, limit: int, coverage: Coverage) -> bytes:
        """GET /messages's answer, a `MessagesPage` as JSON: the records `query(where, limit)`
        finds, each as `shown` gives it (`checkpointed` as `coverage` says now), joined once: a
        record's view is copied by that join only."""
        found = self.query(where, limit=limit)
        # No await between the query and the join: every record found is still kept.
        parts: list[bytes | memoryview] = [b'{"messages":[']
        for i, record in enumerate(found):
            if i:
                parts.append(b",")
            parts.extend(self.shown(record, coverage))
        parts.append(b'],"count":%d}' % len(found))
        return b"".join(parts)

    def shown(self, record: RecentRecord, coverage: Coverage) -> tuple[memoryview, bytes]:
        """`record.json_parts(coverage)` for GET /messages, keeping the view's JSON with the record
        when it fits in the byte bound as it is (nothing is evicted for it): a record shown
        once is decoded once, whatever is never shown is never decoded. Only for a record
        `query()` returned with no await since (so it is still kept)."""
        if record.shown is None:
            kept = self._topics.get(record.topic)
            body = record.view_json(self.schema_versions)
            if self.opener is not None:
                body = self.opener(body)
            if kept is not None and kept.size + len(body) <= self.max_bytes:
                record.writer, record.seq = record.chain_place()
                record.shown = body
                record.size += len(body)
                kept.size += len(body)
            else:
                return record.json_parts(coverage, self.schema_versions, view=body)
        return record.json_parts(coverage, self.schema_versions)

    def streamed(self, record: RecentRecord, coverage: Coverage) -> bytes:
        """`record`'s JSON as GET /messages/stream sends it: as GET /messages shows it, its
        sealed fields opened (or marked erased) now, when it is sent."""
        view = None
        if self.opener is not None and record.shown is None:
            view = self.opener(record.view_json(self.schema_versions))
        return b"".join(record.json_parts(coverage, self.schema_versions, view=view))

    def purge_sealed(self, kids: list[str]) -> int:
        """Drop every kept record with a field sealed under one of `kids` (an erased subject's,
        RG_ERASURE=on); the number dropped."""
        marks = [f"rg-enc:v1:{kid}:".encode() for kid in kids]
        dropped = 0
        for kept in self._topics.values():
            keep = [r for r in kept.records if not any(m in (r.value or b"") for m in marks)]
            dropped += len(kept.records) - len(keep)
            kept.records = keep
            kept.size = sum(r.size for r in keep)
        return dropped

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
