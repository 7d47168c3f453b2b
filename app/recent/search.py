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
more, so no record is skipped whatever the timestamps.
"""

import contextlib
import dataclasses
import secrets
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping
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
from app.recent.record import Coverage, view_fields
from app.recent.search_cursor import CursorCodec, CursorState
from app.settings import Settings

Order = Literal["newest", "oldest"]
# How far past `until` a partition is read for records stamped by a writer whose clock was
# behind another's (records are only ever shown when stamped inside the window).
CLOCK_SKEW_MS = 60_000
# Records asked of one partition at a time.
CHUNK = 2_000
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
    """One partition's part of a page: its offsets still to read and the matches read."""

    next: int
    stop: int
    found: deque[tuple[int, int, bytes]] = field(default_factory=deque)  # (ts, offset, json)

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
        self._running += 1
        consumer = KafkaConsumerClient(
            config=consumer_config(
                self._settings,
                topics=[self.topic],
                auto_offset_reset="earliest",
                value_format="bytes",
                max_poll_records=CHUNK,
            ),
            assign_on_start=False,
        )
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
        lows = await consumer.offsets_for_time(places, query.since_ms)
        highs = await consumer.offsets_for_time(places, query.until_ms + 1 + CLOCK_SKEW_MS)
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
        while True:
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
                if len(out) == query.limit:
                    stopped_by = "limit"
                    break
                _, p, _ = max(heads) if newest else min(heads)
                out.append(parts[p].found.popleft()[2])
                continue
            if scanned >= budget:
                stopped_by = "scan_limit"
                break
            # An even share each, so every waiting partition advances on every page (a page
            # that stops at the bound still moves each of them on).
            share = max(1, min(CHUNK, (budget - scanned) // len(waiting)))
            for p in waiting:
                scanned += await self._chunk(consumer, window, p, parts[p], share)
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

    async def _chunk(
        self, consumer: KafkaConsumerClient, query: RecordQuery, p: int, part: _Partition, most: int
    ) -> int:
        """Read up to `most` offsets of partition `p` in the query's direction, keep the
        matches in `part.found` (in that order); the offsets read."""
        if query.order == "oldest":
            start, end = part.next, min(part.stop, part.next + most)
        else:
            start, end = max(part.stop, part.next - most), part.next
        place = (self.topic, p)
        consumer.assign([place])
        consumer.seek(place, start)
        matches: list[tuple[int, int, bytes]] = []
        idle = 0
        while await consumer.position(place) < end:
            messages = await consumer.poll(timeout_ms=500, max_records=CHUNK)
            idle = 0 if messages else idle + 1
            if idle > IDLE_POLLS:
                raise KafkaTimeoutError(f"{self.topic}/{p} sent nothing for {idle} polls")
            for message in messages:
                if start <= message.offset < end:
                    shown = self._shown(message, query)
                    if shown is not None:
                        matches.append((message.timestamp_ms or 0, message.offset, shown))
        self.read[p] += end - start
        part.found.extend(reversed(matches) if query.order == "newest" else matches)
        if query.order == "oldest":
            part.next = end
        else:
            part.next = start
        return end - start

    def _shown(self, message: KafkaMessage, query: RecordQuery) -> bytes | None:
        """The record's JSON when it passes the query's filters, else None."""
        ts = message.timestamp_ms
        if ts is None or not query.since_ms <= ts <= query.until_ms:
            return None
        key = (
            message.key.decode("utf-8", "replace")
            if isinstance(message.key, bytes)
            else message.key
        )
        if query.user_id is not None and key != query.user_id:
            return None
        headers = message.headers
        event_id = _text(headers.get(EVENT_ID_HEADER))
        if query.event_id is not None and event_id != query.event_id:
            return None
        fields = view_fields(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=ts,
            key=key,
            value=message.value,
            headers=headers,
        )
        value = fields["value"]
        if query.model is not None and not (
            isinstance(value, dict) and value.get("model") == query.model
        ):
            return None
        return orjson.dumps(self._with_evidence(fields, event_id, headers))

    def _with_evidence(
        self, fields: dict[str, Any], event_id: str | None, headers: Mapping[str, bytes | None]
    ) -> dict[str, Any]:
        writer, seq = fields["writer"], fields["seq"]
        covered = None if writer is None or seq is None else self._coverage(writer, seq)
        if writer is not None and seq is not None:
            proof = "/audit/proof?" + urlencode({"writer": writer, "seq": seq})
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


def _text(raw: bytes | None) -> str | None:
    return raw.decode("utf-8", "replace") if raw is not None else None
