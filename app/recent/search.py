"""GET /audit/records: audit records over the whole retention, read from the audit topic.

Each search has a consumer of its own (no group, nothing committed: partitions assigned and
sought), closed when the page is read; at most RG_AUDIT_SEARCH_CONCURRENCY run at once. It
reads the topic, not this process's memory, so it finds the records of every writer: other
replicas, earlier starts.

Where it reads. The audit record's key is its `user_id`, so with a user the records are in one
partition, the one the producer's partitioner (`partition_of_key`) gives; without one, in every
partition of the topic. The window bounds the offsets with Kafka's offsets-for-times, on the
records' Kafka timestamps (the time their writer sent them): from the first offset stamped at
or after `since`, to the first one stamped past `until` + `CLOCK_SKEW_MS` (records of several
writers share a partition, each stamped by its writer's clock). Those offsets are fixed by the
first page and carried by the cursor (app/recent/search_cursor.py), so the pages of a query
read one set of records: what the topic held when it began.

How much it reads. A page reads at most RG_AUDIT_SEARCH_SCAN_LIMIT records; one that stops
there says so, and its cursor goes on from where it stopped. Records come in time order across
partitions (a merge of each partition's records in their order there) and in offset order
within one, oldest or newest first; a page is cut where the merge cannot go on without reading
more, so no record is skipped whatever the timestamps. Partitions are read in rounds: each one
whose matches ran out gets a chunk (about its share of the page, doubled each time it runs dry,
at most an even share of what the bound leaves), all fetched together; a record is compared as
read (time, key, `rg-event-id`) and decoded only for `model` or when the page shows it.
"""

import contextlib
import dataclasses
import secrets
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import orjson

from app.connection import consumer_config
from app.errors import TooManySearchesError
from app.kafka import KafkaConsumerClient, KafkaMessage
from app.kafka.audit import DIGEST_HEADER, EVENT_ID_HEADER
from app.kafka.errors import KafkaTimeoutError
from app.kafka.producer import partition_of_key
from app.kafka.serde import decode_value, serialize
from app.recent.record import Coverage, view_fields
from app.recent.search_cursor import CursorCodec, CursorState
from app.settings import Settings

Order = Literal["newest", "oldest"]
# How far past `until` a partition is read for records stamped by a writer whose clock was
# behind another's (records are only ever shown when stamped inside the window).
CLOCK_SKEW_MS = 60_000
# Most records asked of one partition at a time, and fewest: a partition is read in chunks
# of about its share of the page, doubled each time it runs dry within one page.
CHUNK = 2_000
MIN_CHUNK = 100
FETCH_BYTES = 256 * 1024
# Empty polls (0.5 s each) before a partition that holds records still to read is given up.
IDLE_POLLS = 20


@dataclass(frozen=True, slots=True)
class RecordQuery:
    """One search: its filters, order and page size; the window is [since_ms, until_ms]."""

    since_ms: int
    until_ms: int
    user_id: str | None = None
    model: str | None = None
    event_id: str | None = None
    order: Order = "newest"
    limit: int = 100


@dataclass(slots=True)
class RecordsPage:
    """What one page found: each record's JSON, and where the query goes on."""

    records: list[bytes]
    # The cursor's state: None when the whole set has been answered.
    remaining: CursorState | None
    # Records read from Kafka for this page.
    scanned: int
    stopped_by: Literal["limit", "scan_limit"] | None
    partitions: list[int]


@dataclass(slots=True)
class _Partition:
    """One partition's part of a page: its offsets still to read, the matches read (shown
    only when the page takes them) and how much to read next."""

    next: int
    stop: int
    found: deque[tuple[int, int, KafkaMessage]] = field(default_factory=deque)  # (ts, offset, _)
    chunk: int = 0

    def exhausted(self, order: Order) -> bool:
        return self.next >= self.stop if order == "oldest" else self.next <= self.stop


class RecordSearch:
    """Runs GET /audit/records's searches (see the module docstring)."""

    def __init__(self, settings: Settings, coverage: Coverage) -> None:
        self._settings = settings
        self._coverage = coverage
        secret = settings.audit_search_cursor_secret
        self.cursors = CursorCodec(
            secret.get_secret_value().encode() if secret else secrets.token_bytes(32)
        )
        self._running = 0
        # With RG_ERASURE=on: opens a shown record's sealed fields (or names their erasure).
        self.opener: Callable[[bytes], bytes] | None = None
        # Records read per partition since start (tests check where a search read).
        self.read: Counter[int] = Counter()

    @property
    def topic(self) -> str:
        """The audit topic searched."""
        return self._settings.audit_topic

    @contextlib.asynccontextmanager
    async def _consumer(self) -> AsyncIterator[KafkaConsumerClient]:
        if self._running >= self._settings.audit_search_concurrency:
            raise TooManySearchesError(
                f"{self._running} searches are running (RG_AUDIT_SEARCH_CONCURRENCY); retry"
            )
        consumer = KafkaConsumerClient(
            config=consumer_config(
                self._settings,
                topics=[self.topic],
                auto_offset_reset="earliest",
                value_format="bytes",
                max_poll_records=CHUNK,
                # A chunk is a few hundred records: a fetch of aiokafka's 1 MB per partition
                # would mostly bring records past it.
                extra={"max_partition_fetch_bytes": FETCH_BYTES},
            ),
            assign_on_start=False,
        )
        self._running += 1
        try:
            await consumer.start()
            yield consumer
        finally:
            self._running -= 1
            await consumer.close()

    async def page(self, query: RecordQuery, state: CursorState | None) -> RecordsPage:
        """One page of `query`, from its beginning or from a cursor's `state`."""
        async with self._consumer() as consumer:
            if state is None:
                state = await self._first(consumer, query)
            parts = {p: _Partition(nxt, stop) for p, (nxt, stop) in state.ranges.items()}
            return await self._read(consumer, query, state, parts)

    async def _first(self, consumer: KafkaConsumerClient, query: RecordQuery) -> CursorState:
        ids = await consumer.partitions_of(self.topic)
        if query.user_id is not None:
            ids = [partition_of_key(query.user_id, ids)]
        places = [(self.topic, p) for p in ids]
        # Kafka reads a negative time as "earliest"/"latest": a window before 1970 starts at 0.
        lows = await consumer.offsets_for_time(places, max(0, query.since_ms))
        highs = await consumer.offsets_for_time(places, max(0, query.until_ms + 1 + CLOCK_SKEW_MS))
        ranges = {}
        for place in places:
            low, high = lows[place], max(lows[place], highs[place])
            ranges[place[1]] = (low, high) if query.order == "oldest" else (high, low)
        return CursorState(query.since_ms, query.until_ms, ranges)

    async def _read(
        self,
        consumer: KafkaConsumerClient,
        query: RecordQuery,
        state: CursorState,
        parts: dict[int, _Partition],
    ) -> RecordsPage:
        budget = self._settings.audit_search_scan_limit
        scanned = 0
        out: list[bytes] = []
        stopped_by: Literal["limit", "scan_limit"] | None = None
        newest = query.order == "newest"
        # The window as the first page fixed it (a default window ends when the query began).
        window = dataclasses.replace(query, since_ms=state.since_ms, until_ms=state.until_ms)
        while len(out) < query.limit:
            # The merge takes the next record only when every partition not read to its end
            # has one at hand: else that partition's next match could come first.
            waiting = [
                p for p, part in parts.items() if not part.found and not part.exhausted(query.order)
            ]
            if not waiting:
                heads = [
                    (part.found[0][0], p, part.found[0][1])
                    for p, part in parts.items()
                    if part.found
                ]
                if not heads:
                    break
                _, p, _ = max(heads) if newest else min(heads)
                out.append(self._shown(parts[p].found.popleft()[2]))
                continue
            if scanned >= budget:
                stopped_by = "scan_limit"
                break
            # At most an even share of what the bound leaves, so every waiting partition
            # advances on every page (a page that stops at the bound still moves each on).
            share = max(1, (budget - scanned) // len(waiting))
            need = (query.limit - len(out)) // len(waiting) + 1
            wanted = {}
            for p in waiting:
                part = parts[p]
                part.chunk = min(CHUNK, max(MIN_CHUNK, need, part.chunk * 2))
                wanted[p] = min(share, part.chunk)
            scanned += await self._chunks(consumer, window, parts, wanted)
        else:
            stopped_by = "limit"
        remaining: dict[int, tuple[int, int]] = {}
        for p, part in parts.items():
            if part.found:
                # Read again by the next page from its first record not shown.
                first = part.found[0][1]
                remaining[p] = (first + 1 if newest else first, part.stop)
            elif not part.exhausted(query.order):
                remaining[p] = (part.next, part.stop)
        return RecordsPage(
            records=out,
            remaining=CursorState(state.since_ms, state.until_ms, remaining) if remaining else None,
            scanned=scanned,
            stopped_by=stopped_by if remaining else None,
            partitions=sorted(parts),
        )

    async def _chunks(
        self,
        consumer: KafkaConsumerClient,
        query: RecordQuery,
        parts: dict[int, _Partition],
        wanted: dict[int, int],
    ) -> int:
        """Read the next `wanted[p]` offsets of each partition p in the query's direction, all
        partitions at once; keep the matches in each part's `found` (in that order). Returns
        the offsets read."""
        ranges: dict[int, tuple[int, int]] = {}
        for p, most in wanted.items():
            part = parts[p]
            if query.order == "oldest":
                ranges[p] = (part.next, min(part.stop, part.next + most))
            else:
                ranges[p] = (max(part.stop, part.next - most), part.next)
        consumer.assign([(self.topic, p) for p in ranges])
        for p, (start, _) in ranges.items():
            consumer.seek((self.topic, p), start)
        matches: dict[int, list[tuple[int, int, KafkaMessage]]] = {p: [] for p in ranges}
        # A user's records are told by their key as read: the others are not even decoded.
        key = serialize(query.user_id) if query.user_id is not None else None
        for p, (start, end) in ranges.items():
            # One partition at a time, while the consumer fetches them all: each poll takes
            # only what is left of this one's range, so no record past it is decoded.
            place, idle = (self.topic, p), 0
            while (position := await consumer.position(place)) < end:
                messages = await consumer.poll(
                    timeout_ms=500, max_records=end - position, places=[place], key=key
                )
                idle = 0 if messages else idle + 1
                if idle > IDLE_POLLS:
                    raise KafkaTimeoutError(f"{self.topic}/{p} sent nothing for {idle} polls")
                matches[p] += [
                    (message.timestamp_ms or 0, message.offset, message)
                    for message in messages
                    if start <= message.offset < end and _matches(message, query)
                ]
        read = 0
        for p, (start, end) in ranges.items():
            part = parts[p]
            found = matches[p]
            part.found.extend(reversed(found) if query.order == "newest" else found)
            part.next = end if query.order == "oldest" else start
            self.read[p] += end - start
            read += end - start
        return read

    def _shown(self, message: KafkaMessage) -> bytes:
        """The record's JSON as the page shows it."""
        headers = message.headers
        fields = view_fields(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=message.timestamp_ms,
            key=_key(message),
            value=message.value,
            headers=headers,
        )
        shown = orjson.dumps(
            self._with_evidence(fields, _text(headers.get(EVENT_ID_HEADER)), headers)
        )
        return shown if self.opener is None else self.opener(shown)

    def _with_evidence(
        self, fields: dict[str, Any], event_id: str | None, headers: Mapping[str, bytes | None]
    ) -> dict[str, Any]:
        writer, seq = fields["writer"], fields["seq"]
        covered = None if writer is None or seq is None else self._coverage(writer, seq)
        if writer is not None and seq is not None:
            # Both checked by view_fields (32 hex digits, an integer): nothing to escape.
            proof = f"/audit/proof?writer={writer}&seq={seq}"
        elif event_id is not None:
            proof = "/audit/proof?" + urlencode({"event_id": event_id})
        else:
            proof = None
        return {
            **fields,
            "event_id": event_id,
            "digest": _text(headers.get(DIGEST_HEADER)),
            "checkpointed": covered,
            "proof_url": proof,
        }


def _matches(message: KafkaMessage, query: RecordQuery) -> bool:
    """Whether a record passes the query's filters: its time, key and event id header as read;
    its value decoded only for `model`."""
    ts = message.timestamp_ms
    if ts is None or not query.since_ms <= ts <= query.until_ms:
        return False
    if query.user_id is not None and _key(message) != query.user_id:
        return False
    if query.event_id is not None and _text(message.headers.get(EVENT_ID_HEADER)) != query.event_id:
        return False
    if query.model is not None:
        value = decode_value(message.value, message.headers, "auto")
        return isinstance(value, dict) and value.get("model") == query.model
    return True


def _key(message: KafkaMessage) -> str | None:
    key = message.key
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


def _text(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", "replace") if raw is not None else None
