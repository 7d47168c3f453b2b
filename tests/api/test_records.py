"""GET /audit/records over HTTP: 20,000 records of 200 users over a simulated month, compared
with what a full read of the topic finds; pages, the scan bound, two instances and a restart,
NDJSON, bad input and the scope."""

import asyncio
import random
from typing import Any

import orjson
import pytest

from app.kafka.producer import partition_of_key
from tests.helpers.app import client_for, services_of
from tests.helpers.search import DAY_MS, MODELS, Month, all_pages, iso, places, write_month

SECRET = "rg-test-cursor-secret"


@pytest.fixture(scope="module")
def month(kafka_bootstrap: str) -> Month:
    """One month of records for the whole module (written once: 20,000 records)."""
    return asyncio.run(write_month(kafka_bootstrap))


def _windows(month: Month, rng: random.Random) -> list[tuple[int, int]]:
    windows = []
    for length in (DAY_MS, 3 * DAY_MS, 12 * DAY_MS):
        since = rng.randrange(month.start_ms - DAY_MS, month.end_ms)
        windows.append((since, since + length))
    return windows


async def test_a_users_window_is_what_a_full_read_finds(kafka_bootstrap: str, month: Month) -> None:
    rng = random.Random(1)
    async with client_for(kafka_bootstrap, audit_topic=month.topic) as client:
        search = services_of(client).search
        partitions = sorted({m.partition for m in month.records})
        for user in rng.sample(month.users, 8):
            for since, until in _windows(month, rng):
                for order in ("oldest", "newest"):
                    search.read.clear()
                    params = {"user_id": user, "since": iso(since), "until": iso(until)}
                    found, pages = await all_pages(
                        client, {**params, "order": order, "limit": rng.choice([7, 100, 1000])}
                    )
                    assert places(found) == month.expected(since, until, user_id=user)
                    stamps = [r["timestamp_ms"] for r in found]
                    assert stamps == sorted(stamps, reverse=order == "newest")
                    # One partition read, the producer's partitioner's for the user.
                    mine = partition_of_key(user, partitions)
                    assert set(search.read) <= {mine}
                    assert all(page["partitions"] == [mine] for page in pages)
                    assert all(r["key"] == user and r["value"]["user_id"] == user for r in found)


async def test_each_record_comes_with_its_evidence(kafka_bootstrap: str, month: Month) -> None:
    user = month.users[3]
    async with client_for(kafka_bootstrap, audit_topic=month.topic) as client:
        answer = await client.get(
            "/audit/records",
            params={"user_id": user, "since": iso(month.start_ms), "until": iso(month.end_ms)},
        )
    record = answer.json()["records"][0]
    full = next(
        m
        for m in month.records
        if (m.partition, m.offset) == (record["partition"], record["offset"])
    )
    assert record["value"] == full.value  # decoded JSON
    headers = {name: (raw or b"").decode() for name, raw in full.headers.items()}
    assert record["digest"] == headers["rg-digest"]
    assert record["event_id"] == full.value["event_id"]
    assert record["writer"] == headers["rg-writer"]
    assert record["seq"] == int(headers["rg-seq"])
    assert record["checkpointed"] is None  # no checkpoint of those writers is known
    assert record["proof_url"] == f"/audit/proof?writer={record['writer']}&seq={record['seq']}"


async def test_model_and_event_id_filter_the_window(kafka_bootstrap: str, month: Month) -> None:
    since, until = month.start_ms + 5 * DAY_MS, month.start_ms + 9 * DAY_MS
    async with client_for(kafka_bootstrap, audit_topic=month.topic) as client:
        found, _ = await all_pages(
            client, {"since": iso(since), "until": iso(until), "model": MODELS[1], "limit": 1000}
        )
        assert places(found) == month.expected(since, until, model=MODELS[1])
        target = month.records[12_345]
        found, _ = await all_pages(
            client,
            {
                "since": iso(month.start_ms),
                "until": iso(month.end_ms),
                "event_id": target.value["event_id"],
            },
        )
        assert places(found) == {(target.partition, target.offset)}


async def test_a_window_past_the_scan_bound_answers_part_and_the_cursor_completes_it(
    kafka_bootstrap: str, month: Month
) -> None:
    since, until = month.start_ms, month.end_ms
    async with client_for(
        kafka_bootstrap, audit_topic=month.topic, audit_search_scan_limit=500
    ) as client:
        for order in ("oldest", "newest"):
            found, pages = await all_pages(
                client, {"since": iso(since), "until": iso(until), "order": order, "limit": 1000}
            )
            assert places(found) == month.expected(since, until)
            assert all(page["scanned"] <= 500 for page in pages)
            # The bound stopped pages, and each of those said so.
            bounded = [page for page in pages if page["stopped_by"] == "scan_limit"]
            assert bounded
            assert all(not page["complete"] and page["cursor"] for page in bounded)
            stamps = [r["timestamp_ms"] for r in found]
            assert stamps == sorted(stamps, reverse=order == "newest")


async def test_two_instances_and_a_restart_answer_the_same(
    kafka_bootstrap: str, month: Month
) -> None:
    params = {"since": iso(month.start_ms + DAY_MS), "until": iso(month.start_ms + 4 * DAY_MS)}
    settings: dict[str, Any] = {"audit_topic": month.topic, "audit_search_cursor_secret": SECRET}
    async with (
        client_for(kafka_bootstrap, **settings) as one,
        client_for(kafka_bootstrap, **settings) as two,
    ):
        first = (await one.get("/audit/records", params={**params, "limit": 500})).json()
        # The next page from the other instance.
        rest, _ = await all_pages(two, {**params, "limit": 1000, "cursor": first["cursor"]})
        answered = places(first["records"]) | places(rest)
        assert len(first["records"]) + len(rest) == len(answered)
    async with client_for(kafka_bootstrap, **settings) as restarted:
        again, _ = await all_pages(restarted, {**params, "limit": 1000})
    expected = month.expected(month.start_ms + DAY_MS, month.start_ms + 4 * DAY_MS)
    assert answered == places(again) == expected


async def test_ndjson_gives_a_record_a_line_then_the_page(
    kafka_bootstrap: str, month: Month
) -> None:
    user = month.users[7]
    params = {"user_id": user, "since": iso(month.start_ms), "until": iso(month.end_ms)}
    async with client_for(kafka_bootstrap, audit_topic=month.topic) as client:
        answer = await client.get(
            "/audit/records", params=params, headers={"Accept": "application/x-ndjson"}
        )
        assert answer.headers["content-type"] == "application/x-ndjson"
        lines = [orjson.loads(line) for line in answer.content.splitlines()]
        as_json = (await client.get("/audit/records", params=params)).json()
    assert lines[-1]["page"]["count"] == len(lines) - 1
    assert lines[:-1] == as_json["records"]


async def test_the_default_window_is_the_last_day(kafka_bootstrap: str, month: Month) -> None:
    async with client_for(kafka_bootstrap, audit_topic=month.topic) as client:
        page = (await client.get("/audit/records", params={"limit": 1000})).json()
    assert page["complete"]
    stamps = [r["timestamp_ms"] for r in page["records"]]
    assert stamps
    assert min(stamps) >= month.end_ms - DAY_MS


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"user": "user-1"}, "query.user"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "query.until"),
        ({"since": "yesterday"}, "query.since"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "1001"}, "query.limit"),
        ({"order": "random"}, "query.order"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
    ],
)
async def test_bad_input_is_refused_naming_it(
    kafka_bootstrap: str, topic: str, params: dict[str, str], field: str
) -> None:
    async with client_for(kafka_bootstrap, audit_topic=topic) as client:
        answer = await client.get("/audit/records", params=params)
    assert answer.status_code == 422, answer.text
    assert field in [d["field"] for d in answer.json()["error"]["details"]]


async def test_a_cursor_of_another_query_or_altered_is_refused(
    kafka_bootstrap: str, month: Month
) -> None:
    params: dict[str, str | int] = {
        "since": iso(month.start_ms),
        "until": iso(month.end_ms),
        "limit": 5,
    }
    async with client_for(kafka_bootstrap, audit_topic=month.topic) as client:
        cursor = (await client.get("/audit/records", params=params)).json()["cursor"]
        other = await client.get(
            "/audit/records", params={**params, "user_id": "user-1", "cursor": cursor}
        )
        body, tag = cursor.split(".")
        flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
        tampered = await client.get(
            "/audit/records", params={**params, "cursor": f"{flipped}.{tag}"}
        )
    async with client_for(kafka_bootstrap, audit_topic=month.topic) as elsewhere:
        # Another process with its own random secret cannot check it.
        foreign = await elsewhere.get("/audit/records", params={**params, "cursor": cursor})
    for answer, words in (
        (other, "another query"),
        (tampered, "altered"),
        (foreign, "RG_AUDIT_SEARCH_CURSOR_SECRET"),
    ):
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["details"][0]["field"] == "query.cursor"
        assert words in error["message"]


async def test_searches_beyond_the_concurrency_are_told_to_retry(
    kafka_bootstrap: str, topic: str
) -> None:
    async with client_for(kafka_bootstrap, audit_topic=topic, audit_search_concurrency=1) as client:
        search = services_of(client).search
        search._running = 1  # one search running
        answer = await client.get("/audit/records")
        search._running = 0
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"]["code"] == "too_many_searches"
        assert (await client.get("/audit/records")).status_code == 200


async def test_the_scope_audit_read_is_needed(kafka_bootstrap: str, topic: str) -> None:
    keys = {"rg-test-auditor": ["audit:read"], "rg-test-reader": ["messages:read", "audit:write"]}
    async with client_for(kafka_bootstrap, audit_topic=topic, api_keys=keys) as c:
        assert (await c.get("/audit/records")).status_code == 401
        other = await c.get("/audit/records", headers={"X-API-Key": "rg-test-reader"})
        assert other.status_code == 403
        assert "audit:read" in other.json()["error"]["message"]
        mine = await c.get("/audit/records", headers={"X-API-Key": "rg-test-auditor"})
        assert mine.status_code == 200
