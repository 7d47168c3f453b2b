"""The disk under the spool fills up, for real: a 4 MiB tmpfs holds the spool folder.

Appends that find no room are refused with 503 and `Retry-After` (never 500, never a dropped
connection), SQLite's own error is what gets logged, records whose removal cannot be written
after Kafka acknowledged them are never sent again, and once space returns the spool drains
and the service serves as before.
"""

import asyncio
import collections
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from app.embedded import EmbeddedKafka
from tests.helpers.app import assert_contract_error, client_for
from tests.helpers.broker import in_thread_start, in_thread_stop
from tests.helpers.disk import fill
from tests.helpers.kafka import new_topic, records_of
from tests.helpers.load import Answer, answer_of, summary
from tests.helpers.metrics import spool_metrics
from tests.helpers.polling import eventually
from tests.helpers.processes import freeze
from tests.helpers.service import Launch

PROMPT_BYTES = 100_000
SPOOLED = 10
REFUSED = 10
STUCK_S = 8.0


def big_event(index: int) -> dict[str, str]:
    return {
        "event_id": f"full-{index}",
        "user_id": f"user-{index % 5}",
        "model": "m",
        "prompt": f"{index}:" + "p" * PROMPT_BYTES,
        "response": "r",
    }


async def post(client: httpx.AsyncClient, indexes: range) -> list[Answer]:
    """POST the big events of `indexes`, four at a time; transport errors are answers too."""

    async def one(index: int) -> Answer:
        event = big_event(index)
        started = time.monotonic()
        try:
            response = await client.post("/audit", json=event)
        except httpx.HTTPError as exc:
            failure = f"{type(exc).__name__}: {exc}"
            return answer_of(index, event, None, time.monotonic() - started, failure)
        return answer_of(index, event, response, time.monotonic() - started)

    answers: list[Answer] = []
    for start in range(indexes.start, indexes.stop, 4):
        answers += await asyncio.gather(
            *(one(i) for i in range(start, min(start + 4, indexes.stop)))
        )
    return answers


async def event_ids_in(bootstrap: str, topic: str) -> collections.Counter[Any]:
    return collections.Counter(r.header("rg-event-id") for r in await records_of(bootstrap, topic))


async def test_a_full_disk_refuses_appends_with_503_and_never_repeats_a_record(
    own_broker: EmbeddedKafka, small_disk: Path, tmp_path: Path, start_service: Launch
) -> None:
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    await in_thread_stop(own_broker)
    service = await asyncio.to_thread(
        start_service,
        bootstrap,
        tmp_path / "run",
        audit_topic=topic,
        spool_dir=str(small_disk / "spool"),
        # No floor: this test fills the disk itself and wants SQLite to meet it.
        spool_min_free_bytes="0",
    )
    await asyncio.to_thread(service.wait_live)
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        # 1. Kafka is away: events are spooled, then the disk is full and appends fail.
        spooled = await post(client, range(SPOOLED))
        filler = await asyncio.to_thread(fill, small_disk)
        refused = await post(client, range(SPOOLED, SPOOLED + REFUSED))
        full = await spool_metrics(client)

        # 2. Kafka comes back while not a byte is free: the forwarder sends the spooled
        # records, and their removal cannot be written.
        await in_thread_start(own_broker)
        await asyncio.sleep(STUCK_S)
        while_full = await event_ids_in(bootstrap, topic)
        stuck = await spool_metrics(client)

        # 3. Space returns: the spool drains by itself, and new events are acked again.
        filler.unlink()
        freed = time.monotonic()

        async def drained() -> bool:
            return (await spool_metrics(client))["rg_spool_records"] == 0

        await eventually(drained, timeout_s=60)
        drain_s = time.monotonic() - freed
        after = await client.post("/audit", json=big_event(SPOOLED + REFUSED))
    assert await asyncio.to_thread(service.stop) == 0
    log = service.log()
    stored = await event_ids_in(bootstrap, topic)

    print(
        f"\n[fault] spool on a 4 MiB tmpfs, Kafka away, {PROMPT_BYTES}-byte prompts: "
        f"{summary(spooled)} before the disk filled, {summary(refused)} after; spool "
        f"{full['rg_spool_records']:.0f} records, {full['rg_spool_bytes']:.0f} bytes; Kafka "
        f"back on the full disk for {STUCK_S:.0f}s: {sum(while_full.values())} records in "
        f"Kafka for {len(while_full)} events, spool still {stuck['rg_spool_records']:.0f}; "
        f"space freed -> spool empty in {drain_s:.1f}s; at the end {sum(stored.values())} "
        f"records for {len(stored)} events; {log.count('spool ')} spool log lines"
    )
    assert {a.status for a in spooled} == {202}, summary(spooled)
    for answer in refused:
        assert answer.status == 503, summary(refused)
        assert answer.body["error"]["code"] == "spool_unavailable"
        assert "database or disk is full" in answer.body["error"]["message"]
        assert answer.retry_after
    assert full["rg_spool_records"] == SPOOLED
    assert "database or disk is full" in log
    assert "cannot rollback" not in log
    # Sent once while the removal could not be written (it is still in the spool).
    assert set(while_full) == {a.event_id for a in spooled}
    assert max(while_full.values()) == 1
    assert stuck["rg_spool_records"] == SPOOLED
    # Nothing accepted is lost, nothing is repeated, and the service serves again.
    assert after.status_code == 201, after.text
    assert set(stored) == {a.event_id for a in spooled} | {after.json()["event_id"]}
    assert max(stored.values()) == 1
    assert "Traceback" not in log


async def test_a_retry_after_a_failed_spool_write_gets_the_first_attempts_receipt(
    own_broker: EmbeddedKafka, small_disk: Path
) -> None:
    # The broker freezes (SIGSTOP): the record is in the producer, unacknowledged, when the
    # service gives up waiting and tries the spool, whose disk is full. The client is told
    # 503; its retry must wait for that first attempt, not write a second record.
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    settings: dict[str, Any] = {"spool_dir": small_disk / "spool", "spool_min_free_bytes": 0}
    async with client_for(bootstrap, audit_topic=topic, spool_after_s=1, **settings) as client:
        warm = await client.post("/audit", json=big_event(0))
        assert warm.status_code == 201, warm.text
        filler = await asyncio.to_thread(fill, small_disk)
        assert own_broker.pid is not None
        freeze(own_broker.pid)
        try:
            first = await client.post("/audit", json=big_event(1))
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)
        assert_contract_error(first, 503, "spool_unavailable")
        retry = await client.post("/audit", json=big_event(1))
        filler.unlink()
    assert retry.status_code == 201, retry.text
    assert retry.json()["status"] == "acked"
    stored = await event_ids_in(bootstrap, topic)
    assert stored == {"full-0": 1, "full-1": 1}
