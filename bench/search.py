"""`make bench-search`: how fast GET /audit/records answers over a large audit topic.

    .venv/bin/python -m bench.search [--records N] [--users N] [--queries N]

Writes `--records` (default 1,000,000) audit records of `--users` users (default 1,000) over a
simulated 30 days (each record's Kafka timestamp is its event time, in order), ~600-byte
values, to a new six-partition topic (the service's default) on the embedded broker (or
RG_KAFKA_BOOTSTRAP_SERVERS). Then, through the app in this process (httpx's ASGI transport: the
route, the search and its consumer, no network hop): p50/p99 of one user's day (every page of
a random user's random day), and the records/s of queries over the whole window without a user:
its first `--pages` pages of 1000 (default 100), and one `event_id` looked for over the whole window
(every record read, RG_AUDIT_SEARCH_SCAN_LIMIT a page). Results: printed, and
bench/results/search.json.
"""

import argparse
import asyncio
import json
import random
import secrets
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from asgi_lifespan import LifespanManager

from app.kafka.stamps import utc_of_epoch_ms
from app.main import create_app
from app.settings import Settings
from bench.run import kafka_broker

DAY_MS = 86_400_000
PARTITIONS = 6
RESULTS = Path(__file__).parent / "results" / "search.json"


async def write_trail(bootstrap: str, topic: str, records: int, users: int) -> tuple[int, str]:
    """The records, in time order; returns the first timestamp and one event id to look for."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, PARTITIONS, 1, topic_configs={"retention.ms": "-1"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1024 * 1024
    )
    await producer.start()
    rng = random.Random(28)  # noqa: S311 - a workload, not secrets
    end_ms = int(time.time() * 1000) - 60_000
    start_ms = end_ms - 30 * DAY_MS
    step = (end_ms - start_ms) / records
    writer = secrets.token_hex(16)
    padding = "x" * 400
    wanted = ""
    started = time.perf_counter()
    try:
        pending = []
        for n in range(records):
            ts = int(start_ms + n * step)
            user = f"user-{rng.randrange(users)}"
            event_id = str(uuid.uuid4())
            if n == records // 2:
                wanted = event_id
            value = json.dumps(
                {
                    "event_id": event_id,
                    "model": rng.choice(("gpt-4o", "claude-3", "llama-3")),
                    "prompt": f"question {n} {padding}",
                    "response": "answer",
                    "timestamp_utc": utc_of_epoch_ms(ts),
                    "user_id": user,
                },
                separators=(",", ":"),
                sort_keys=True,
            ).encode()
            headers = [
                ("content-type", b"application/json"),
                ("rg-event-id", event_id.encode()),
                ("rg-digest", b"sha256:" + b"0" * 64),
                ("rg-writer", writer.encode()),
                ("rg-seq", str(n).encode()),
            ]
            pending.append(
                await producer.send(
                    topic, value, key=user.encode(), headers=headers, timestamp_ms=ts
                )
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    elapsed = time.perf_counter() - started
    print(f"wrote {records:,} records in {elapsed:.0f} s ({records / elapsed:,.0f}/s)", flush=True)
    return start_ms, wanted


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with kafka_broker() as broker:
        topic = f"bench-search-{uuid.uuid4().hex[:8]}"
        start_ms, wanted = await write_trail(
            broker.bootstrap_servers, topic, args.records, args.users
        )
        app = create_app(
            Settings(
                _env_file=None,
                kafka_bootstrap_servers=[broker.bootstrap_servers],
                audit_topic=topic,
                audit_topic_check="warn",
            )
        )
        async with (
            LifespanManager(app) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app), base_url="http://rg", timeout=600
            ) as client,
        ):
            return {
                "records": args.records,
                "users": args.users,
                "partitions": PARTITIONS,
                **await user_days(client, start_ms, args),
                **await whole_window(client, start_ms, wanted, args.pages),
            }


async def pages(
    client: httpx.AsyncClient, params: dict[str, Any], most: int = 1_000_000
) -> tuple[int, int, int]:
    """The pages of a query, at most `most`: (records answered, records scanned, pages)."""
    answered = scanned = count = 0
    cursor = None
    while count < most:
        answer = await client.get(
            "/audit/records", params={**params, **({"cursor": cursor} if cursor else {})}
        )
        answer.raise_for_status()
        page = answer.json()
        answered += page["count"]
        scanned += page["scanned"]
        count += 1
        cursor = page["cursor"]
        if cursor is None:
            break
    return answered, scanned, count


async def user_days(
    client: httpx.AsyncClient, start_ms: int, args: argparse.Namespace
) -> dict[str, Any]:
    rng = random.Random(1)  # noqa: S311 - a workload, not secrets
    times, found = [], []
    for _ in range(args.queries):
        since = start_ms + rng.randrange(29) * DAY_MS
        params = {
            "user_id": f"user-{rng.randrange(args.users)}",
            "since": utc_of_epoch_ms(since),
            "until": utc_of_epoch_ms(since + DAY_MS - 1),
            "limit": 1000,
        }
        began = time.perf_counter()
        answered, _, _ = await pages(client, params)
        times.append(time.perf_counter() - began)
        found.append(answered)
    times.sort()
    result = {
        "user_day_p50_ms": round(statistics.median(times) * 1e3, 1),
        "user_day_p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3, 1),
        "user_day_records_mean": round(statistics.mean(found), 1),
    }
    print(
        f"one user's day ({args.queries} queries, {result['user_day_records_mean']} records "
        f"each on average): p50 {result['user_day_p50_ms']} ms, p99 {result['user_day_p99_ms']} ms",
        flush=True,
    )
    return result


async def whole_window(
    client: httpx.AsyncClient, start_ms: int, wanted: str, most: int
) -> dict[str, Any]:
    window = {
        "since": utc_of_epoch_ms(start_ms),
        "until": utc_of_epoch_ms(start_ms + 31 * DAY_MS),
    }
    began = time.perf_counter()
    answered, scanned, count = await pages(
        client, {**window, "limit": 1000, "order": "oldest"}, most
    )
    paging = time.perf_counter() - began
    began = time.perf_counter()
    hit, read, looks = await pages(client, {**window, "event_id": wanted})
    looking = time.perf_counter() - began
    if hit != 1:
        raise SystemExit(f"the event id was found {hit} times, not once")
    result = {
        "window_paged_records_per_s": round(answered / paging),
        "window_paged_pages": count,
        "window_paged_scanned": scanned,
        "event_id_scan_records_per_s": round(read / looking),
        "event_id_scan_pages": looks,
        "event_id_scan_s": round(looking, 1),
    }
    print(
        f"whole window without a user, paged by 1000 ({count} pages): {answered:,} records in "
        f"{paging:.1f} s "
        f"({result['window_paged_records_per_s']:,}/s)\n"
        f"one event_id over the whole window: {read:,} records read in {looking:.1f} s "
        f"({result['event_id_scan_records_per_s']:,}/s, {looks} pages of the scan bound)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--pages", type=int, default=100, help="pages of the paged window query")
    result = asyncio.run(measure(parser.parse_args()))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
