"""The broker is away for more than 30 s while the service spools: nothing accepted is lost,
nothing is written twice, and the order per user holds."""

import asyncio
import collections
import time
from pathlib import Path

import httpx

from app.embedded import EmbeddedKafka
from tests.helpers.broker import in_thread_start, in_thread_stop
from tests.helpers.kafka import new_topic, records_of
from tests.helpers.load import Answer, answer_of, audit_event, summary
from tests.helpers.metrics import spool_metrics
from tests.helpers.polling import eventually
from tests.helpers.service import Launch

OUTAGE_S = 30
USERS = 20


async def test_broker_down_for_30s_with_the_spool_on(
    own_broker: EmbeddedKafka, tmp_path: Path, start_service: Launch
) -> None:
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    spool_dir = tmp_path / "spool"
    settings = {"audit_topic": topic, "spool_dir": str(spool_dir), "spool_after_s": "1"}
    service = await asyncio.to_thread(start_service, bootstrap, tmp_path / "run-1", **settings)
    await asyncio.to_thread(service.wait_ready)

    await in_thread_stop(own_broker)
    down_since = time.monotonic()
    answers: list[Answer] = []
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        index = 0
        # Ten events a second, from 20 users, for the whole outage; one request at a time per
        # user, so the order each user sent is the order that must come out of Kafka.
        while time.monotonic() - down_since < OUTAGE_S:
            wave = [audit_event(index + i, prefix="spooled", users=USERS) for i in range(10)]
            index += len(wave)
            sent = time.monotonic()
            responses = await asyncio.gather(*(client.post("/audit", json=e) for e in wave))
            took = time.monotonic() - sent
            for offset, (event, response) in enumerate(zip(wave, responses, strict=True)):
                answers.append(answer_of(index - len(wave) + offset, event, response, took))
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - sent)))
        during = await spool_metrics(client)

    # The service stops while Kafka is still away: the spool stays on disk.
    assert await asyncio.to_thread(service.stop) == 0
    await in_thread_start(own_broker)
    away_s = time.monotonic() - down_since
    restarted = await asyncio.to_thread(start_service, bootstrap, tmp_path / "run-2", **settings)
    drain_started = time.monotonic()
    try:
        await asyncio.to_thread(restarted.wait_ready)
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:

            async def drained() -> bool:
                return (await spool_metrics(client))["rg_spool_records"] == 0

            await eventually(drained, timeout_s=120)
            after = await spool_metrics(client)
        drain_s = time.monotonic() - drain_started
    finally:
        assert await asyncio.to_thread(restarted.stop) == 0

    print(
        f"\n[fault] broker away {away_s:.0f}s with RG_SPOOL_DIR: {len(answers)} POST /audit, "
        f"{summary(answers)}; slowest answer {max(a.seconds for a in answers):.2f}s; spool at "
        f"the end of the outage {during['rg_spool_records']:.0f} records, "
        f"{during['rg_spool_bytes']:.0f} bytes, "
        f"oldest {during['rg_spool_oldest_age_seconds']:.0f}s; "
        f"restart to empty spool {drain_s:.1f}s; forwarded after restart "
        f"{after['rg_spool_forwarded_total']:.0f}"
    )
    assert {a.status for a in answers} == {202}, summary(answers)
    assert {a.body["status"] for a in answers} == {"spooled"}
    assert during["rg_spool_records"] == len(answers)

    records = await records_of(bootstrap, topic)
    stored = collections.Counter(r.header("rg-event-id") for r in records)
    assert set(stored) == {a.event_id for a in answers}
    assert max(stored.values()) == 1
    for user in range(USERS):
        mine = sorted(
            (r for r in records if r.key == f"user-{user}"), key=lambda r: (r.partition, r.offset)
        )
        assert len({r.partition for r in mine}) == 1
        sent_ids = [a.event_id for a in answers if a.user_id == f"user-{user}"]
        assert [r.header("rg-event-id") for r in mine] == sent_ids


async def test_events_queued_when_the_service_stops_with_the_broker_away_are_spooled(
    own_broker: EmbeddedKafka, tmp_path: Path, start_service: Launch
) -> None:
    # Answered 202 "queued" (in the producer, `?wait=false`), then SIGTERM while Kafka is still
    # away: the producer cannot deliver them, so they go to the spool for the next start.
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    settings = {
        "audit_topic": topic,
        "spool_dir": str(tmp_path / "spool"),
        "produce_timeout_s": "2",
    }
    service = await asyncio.to_thread(start_service, bootstrap, tmp_path / "run-1", **settings)
    await asyncio.to_thread(service.wait_ready)
    events = [audit_event(index, prefix="queued-at-stop", users=3) for index in range(31)]
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        # One stored first: the producer knows the topic's partitions, so what follows is
        # queued at once rather than waiting for them.
        assert (await client.post("/audit", json=events[0])).status_code == 201
        await in_thread_stop(own_broker)
        answers = [await client.post("/audit?wait=false", json=event) for event in events[1:]]
    statuses = collections.Counter((a.status_code, a.json()["status"]) for a in answers)
    assert await asyncio.to_thread(service.stop) == 0
    stopped_log = service.log()

    await in_thread_start(own_broker)
    restarted = await asyncio.to_thread(start_service, bootstrap, tmp_path / "run-2", **settings)
    try:
        await asyncio.to_thread(restarted.wait_ready)
        async with httpx.AsyncClient(base_url=restarted.url, timeout=30) as client:

            async def drained() -> bool:
                return (await spool_metrics(client))["rg_spool_records"] == 0

            await eventually(drained, timeout_s=60)
    finally:
        assert await asyncio.to_thread(restarted.stop) == 0
    records = await records_of(bootstrap, topic)
    stored = collections.Counter(r.header("rg-event-id") for r in records)
    print(
        f"\n[fault] SIGTERM with the broker away after {len(answers)} POST /audit?wait=false "
        f"({dict(statuses)}): {sum(stored.values())} stored after the next start"
    )
    assert statuses == {(202, "queued"): len(answers)}
    assert [e["event_id"] for e in events if stored[e["event_id"]] != 1] == []
    assert "is void" not in stopped_log
