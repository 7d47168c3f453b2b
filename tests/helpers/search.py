"""A month of audit records for the tests of GET /audit/records, and what a full read finds."""

import asyncio
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

from app.kafka import KafkaAuditEvent, KafkaMessage, KafkaProducerClient, KafkaProducerConfig
from app.kafka.audit import KafkaAuditLogger
from app.kafka.stamps import utc_of_epoch_ms
from tests.helpers.kafka import new_topic, records_of

DAY_MS = 86_400_000
MODELS = ("gpt-4o", "claude-3", "llama-3")


@dataclass(frozen=True)
class Place:
    """A chain position for the records' headers (the search only shows them)."""

    writer: str
    seq: int
    chain: str = "0" * 64


@dataclass(frozen=True)
class Month:
    """The topic, its records as a full read finds them, and the month they span."""

    topic: str
    records: list[KafkaMessage]
    start_ms: int
    end_ms: int
    users: list[str]

    def expected(
        self,
        since_ms: int,
        until_ms: int,
        *,
        user_id: str | None = None,
        model: str | None = None,
    ) -> set[tuple[int, int]]:
        """(partition, offset) of every record a query of these filters must answer."""
        return {
            (m.partition, m.offset)
            for m in self.records
            if m.timestamp_ms is not None
            and since_ms <= m.timestamp_ms <= until_ms
            and (user_id is None or m.key == user_id)
            and (model is None or m.value["model"] == model)
        }


async def write_month(
    bootstrap: str, *, records: int = 20_000, users: int = 200, partitions: int = 4
) -> Month:
    """`records` audit records of `users` users over the 30 days ending now, in time order,
    written by the library's producer in the audit record format with each record's Kafka
    timestamp set to its event's `timestamp_utc` (two writers interleaved)."""
    topic = await new_topic(bootstrap, partitions)
    rng = random.Random(28)
    names = [f"user-{n}" for n in range(users)]
    end_ms = int(time.time() * 1000) - 60_000
    start_ms = end_ms - 30 * DAY_MS
    step = (end_ms - start_ms) // records
    writers = [secrets.token_hex(16), secrets.token_hex(16)]
    producer = KafkaProducerClient(config=KafkaProducerConfig(bootstrap_servers=bootstrap))
    async with producer:
        audit = KafkaAuditLogger(producer, topic=topic)
        deliveries = []
        for n in range(records):
            ts = start_ms + n * step
            event = KafkaAuditEvent(
                user_id=rng.choice(names),
                model=rng.choice(MODELS),
                prompt=f"prompt {n}",
                response=f"response {n}",
                timestamp_utc=iso(ts),
            )
            record = audit.record_of(event, place=Place(writers[n % 2], n // 2))
            deliveries.append(
                await producer.queue(
                    topic, record.value, key=record.key, headers=record.headers, timestamp_ms=ts
                )
            )
        await asyncio.gather(*(d.wait() for d in deliveries))
    written = await records_of(bootstrap, topic)
    assert len(written) == records
    return Month(topic, written, start_ms, end_ms, names)


def iso(ms: int) -> str:
    """An RFC 3339 time of `ms`."""
    text = utc_of_epoch_ms(ms)
    assert text is not None
    return text


async def all_pages(
    client: httpx.AsyncClient, params: dict[str, Any], *, most: int = 1000
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow the cursor to the end; the records in answer order and each page's summary."""
    found: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    cursor = None
    for _ in range(most):
        answer = await client.get(
            "/audit/records", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        assert answer.status_code == 200, answer.text
        page = answer.json()
        found += page.pop("records")
        pages.append(page)
        cursor = page["cursor"]
        if cursor is None:
            assert page["complete"]
            return found, pages
    raise AssertionError(f"no end after {most} pages")


def places(records: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """(partition, offset) of answered records, each once."""
    found = [(r["partition"], r["offset"]) for r in records]
    assert len(found) == len(set(found)), "a record answered twice"
    return set(found)
