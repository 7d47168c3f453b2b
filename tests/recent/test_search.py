"""RecordSearch against the real broker, called directly: where it reads, what a page holds,
and that a page cut by the scan bound still moves the query on."""

import time
from typing import Any

import orjson

from app.kafka import KafkaProducerClient
from app.kafka.producer import partition_of_key
from app.recent.search import Order, RecordQuery, RecordSearch
from app.recent.search_cursor import CursorState
from app.settings import Settings
from tests.helpers.kafka import new_topic


def search_on(bootstrap: str, topic: str, **settings: Any) -> RecordSearch:
    return RecordSearch(
        Settings(
            _env_file=None, kafka_bootstrap_servers=[bootstrap], audit_topic=topic, **settings
        ),
        lambda writer, seq: None,
    )


async def everything(search: RecordSearch, query: RecordQuery) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    state: CursorState | None = None
    for _ in range(1000):
        page = await search.page(query, state)
        found += [orjson.loads(r) for r in page.records]
        if page.remaining is None:
            return found
        state = page.remaining
    raise AssertionError("no end")


async def test_a_user_is_read_in_one_partition_only(
    kafka_bootstrap: str, producer: KafkaProducerClient
) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=5)
    now = int(time.time() * 1000)
    for n in range(200):
        await producer.queue(
            topic,
            {"user_id": f"u{n % 20}", "model": "m", "n": n},
            key=f"u{n % 20}",
            timestamp_ms=now - 200_000 + n * 1000,
        )
    await producer.flush()
    search = search_on(kafka_bootstrap, topic)
    query = RecordQuery(since_ms=now - 10**6, until_ms=now, user_id="u7", order="oldest")
    found = await everything(search, query)
    assert [r["value"]["n"] for r in found] == list(range(7, 200, 20))
    mine = partition_of_key("u7", [0, 1, 2, 3, 4])
    assert set(search.read) == {mine}
    # Read: the user's partition over the window, no more (the other users there included).
    in_partition = sum(
        1 for n in range(200) if partition_of_key(f"u{n % 20}", list(range(5))) == mine
    )
    assert search.read[mine] == in_partition
    assert search._running == 0  # the consumer was closed


async def test_records_of_a_lagging_clock_are_found_within_the_skew(
    kafka_bootstrap: str, producer: KafkaProducerClient
) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=1)
    now = int(time.time() * 1000)
    # Writer B's clock lags writer A's (by less than CLOCK_SKEW_MS): its records, stamped
    # earlier, follow A's in the partition.
    stamps = [now - 60_000, now - 50_000, now - 80_000, now - 45_000]
    for n, ts in enumerate(stamps):
        await producer.publish(topic, {"n": n}, key="k", timestamp_ms=ts)
    search = search_on(kafka_bootstrap, topic)
    orders: tuple[Order, ...] = ("oldest", "newest")
    for order in orders:
        query = RecordQuery(since_ms=now - 90_000, until_ms=now - 55_000, order=order)
        found = await everything(search, query)
        # Partition order, never a record skipped: A's at -60 s, then B's at -80 s.
        ns = [r["value"]["n"] for r in found]
        assert ns == ([0, 2] if order == "oldest" else [2, 0])


async def test_a_page_cut_by_the_scan_bound_moves_every_partition_on(
    kafka_bootstrap: str, producer: KafkaProducerClient
) -> None:
    topic = await new_topic(kafka_bootstrap, partitions=3)
    now = int(time.time() * 1000)
    # Partition 0 holds many matches; partitions 1 and 2 one match each, at their end.
    for n in range(900):
        p = n % 3
        model = "rare" if (p > 0 and n >= 890) or p == 0 else "common"
        await producer.queue(
            topic,
            {"model": model, "n": n},
            partition=p,
            key=f"k{p}",
            timestamp_ms=now - 900_000 + n * 1000,
        )
    await producer.flush()
    search = search_on(kafka_bootstrap, topic, audit_search_scan_limit=150)
    query = RecordQuery(
        since_ms=now - 10**6, until_ms=now, model="rare", order="oldest", limit=1000
    )
    pages = 0
    found: list[int] = []
    state: CursorState | None = None
    while True:
        page = await search.page(query, state)
        pages += 1
        assert page.scanned <= 150
        found += [orjson.loads(r)["value"]["n"] for r in page.records]
        if page.remaining is None:
            break
        assert page.stopped_by == "scan_limit"
        state = page.remaining
    assert sorted(found) == sorted(
        [n for n in range(900) if n % 3 == 0] + [n for n in range(890, 900) if n % 3]
    )
    assert pages < 100
