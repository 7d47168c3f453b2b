"""The broker goes away and comes back while the service (no spool) takes audit events."""

import asyncio
import collections
import os
import signal
import time

import httpx

from app.embedded import EmbeddedKafka
from tests.helpers.app import assert_contract_error, client_for
from tests.helpers.broker import in_thread_start, in_thread_stop
from tests.helpers.kafka import new_topic, records_of
from tests.helpers.load import audit_event, post_audits, summary
from tests.helpers.polling import eventually
from tests.helpers.processes import freeze

PRODUCE_TIMEOUT_S = 3.0
TOTAL = 2000


async def test_broker_stopped_and_restarted_during_2000_audits(own_broker: EmbeddedKafka) -> None:
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    outage: dict[str, float] = {}
    stop_after = asyncio.Event()

    async def fault() -> None:
        await stop_after.wait()
        outage["stopping"] = time.monotonic()
        await in_thread_stop(own_broker)
        outage["stopped"] = time.monotonic()
        await asyncio.sleep(3)
        await in_thread_start(own_broker)
        outage["back"] = time.monotonic()

    def answered(n: int) -> None:
        if n >= 300:
            stop_after.set()

    async with client_for(
        bootstrap, audit_topic=topic, produce_timeout_s=PRODUCE_TIMEOUT_S
    ) as client:
        started = time.monotonic()
        fault_task = asyncio.create_task(fault())
        answers = await post_audits(client, TOTAL, prefix="outage", answered=answered)
        await fault_task
        elapsed = time.monotonic() - started

        acked = [a for a in answers if a.status == 201]
        others = [a for a in answers if a.status != 201]
        # Retry everything that was refused, with the same event_id, now that Kafka is back.
        refused = {a.event_id for a in others}
        retries = [
            await client.post("/audit", json=audit_event(a.index, prefix="outage")) for a in others
        ]

    print(
        f"\n[fault] broker stop/restart during {TOTAL} POST /audit (32 concurrent, "
        f"RG_PRODUCE_TIMEOUT_S={PRODUCE_TIMEOUT_S}): {summary(answers)}; broker stopping "
        f"{outage['stopped'] - outage['stopping']:.1f}s, "
        f"away {outage['back'] - outage['stopped']:.1f}s; "
        f"slowest answer {max(a.seconds for a in answers):.2f}s; run {elapsed:.1f}s; "
        f"{len(retries)} retries: {collections.Counter(r.status_code for r in retries)}"
    )
    assert acked, "no request succeeded"
    assert others, "the outage refused nothing: it came too late"
    for answer in others:
        assert answer.status in (429, 503), answer
        assert answer.retry_after, answer
    # Bounded: no request hangs while the broker is away.
    assert max(a.seconds for a in answers) < PRODUCE_TIMEOUT_S + 5

    records = await records_of(bootstrap, topic)
    stored = collections.Counter(r.header("rg-event-id") for r in records)
    for answer in acked:
        assert stored[answer.event_id] == 1, answer
        assert (answer.body["partition"], answer.body["offset"]) in {
            (r.partition, r.offset) for r in records if r.header("rg-event-id") == answer.event_id
        }
    # Each retry of a refused event got a receipt, and no event is stored twice: a retry of an
    # event whose first attempt arrived late got that attempt's receipt.
    assert all(r.status_code == 201 for r in retries), [
        r.text for r in retries if r.status_code != 201
    ]
    assert {r.json()["event_id"] for r in retries} == refused
    assert set(stored) == {a.event_id for a in answers}
    assert max(stored.values()) == 1


async def test_without_a_broker_audits_get_503_at_once_and_succeed_once_it_appears(
    own_broker: EmbeddedKafka,
) -> None:
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    await in_thread_stop(own_broker)
    async with client_for(
        bootstrap, audit_topic=topic, produce_timeout_s=PRODUCE_TIMEOUT_S
    ) as client:
        assert (await client.get("/readyz")).status_code == 503
        started = time.monotonic()
        refused = await client.post(
            "/audit", json={"user_id": "u", "model": "m", "prompt": "p", "response": "r"}
        )
        waited = time.monotonic() - started
        assert_contract_error(refused, 503, "broker_unavailable")
        assert refused.headers["retry-after"]
        assert waited < PRODUCE_TIMEOUT_S

        await in_thread_start(own_broker)  # no restart of the service
        await eventually(lambda: ready(client), timeout_s=60)
        accepted = await client.post(
            "/audit", json={"user_id": "u", "model": "m", "prompt": "p", "response": "r"}
        )
        assert accepted.status_code == 201, accepted.text


async def ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_kafka_timeout_tells_each_route_what_a_retry_does(own_broker: EmbeddedKafka) -> None:
    # A frozen broker (SIGSTOP): both records wait in the producer past RG_PRODUCE_TIMEOUT_S.
    # /audit's retry with the same event_id waits for the first attempt; /publish has no
    # event id, so its retry may write the record twice, and the answer must not say otherwise.
    bootstrap = own_broker.bootstrap_servers
    topic, target = await new_topic(bootstrap), await new_topic(bootstrap)
    async with client_for(bootstrap, audit_topic=topic, produce_timeout_s=2.0) as client:
        warm = await client.post("/publish", json={"topic": target, "value": 0})
        assert warm.status_code == 201, warm.text
        assert own_broker.pid is not None
        freeze(own_broker.pid)
        try:
            published = await client.post("/publish", json={"topic": target, "value": 1})
            audited = await client.post("/audit", json=audit_event(1, prefix="frozen"))
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)
    publish_error = assert_contract_error(published, 503, "kafka_timeout")
    assert "event_id" not in publish_error["message"]
    assert "a retry may write it twice" in publish_error["message"]
    audit_error = assert_contract_error(audited, 503, "kafka_timeout")
    assert "retry with the same event_id" in audit_error["message"]


async def test_every_event_answered_202_arrives_after_a_broker_outage(
    own_broker: EmbeddedKafka,
) -> None:
    # ?wait=false: the 202 says the record is in the producer and will get there. Events are
    # queued while the broker is away, which stays away longer than the producer's request
    # timeout, then comes back: each event answered 202 is stored, once.
    bootstrap = own_broker.bootstrap_servers
    topic = await new_topic(bootstrap)
    async with client_for(
        bootstrap,
        audit_topic=topic,
        produce_timeout_s=PRODUCE_TIMEOUT_S,
        kafka_request_timeout_ms=2000,
    ) as client:
        before = await post_audits(client, 50, prefix="before", path="/audit?wait=false")
        await in_thread_stop(own_broker)
        away = await post_audits(
            client, 200, prefix="away", concurrency=8, path="/audit?wait=false"
        )
        await asyncio.sleep(6)  # past RG_KAFKA_REQUEST_TIMEOUT_MS, the records still waiting
        await in_thread_start(own_broker)
        answers = before + away
        queued = {a.event_id for a in answers if a.status == 202}
        print(f"\n[fault] 200 POST /audit?wait=false with the broker away: {summary(away)}")
        assert {a.event_id for a in away if a.status == 202}, "nothing was queued while away"

        async def all_stored() -> bool:
            stored = {r.header("rg-event-id") for r in await records_of(bootstrap, topic)}
            return queued <= stored

        await eventually(all_stored, timeout_s=90)
    records = await records_of(bootstrap, topic)
    stored = collections.Counter(r.header("rg-event-id") for r in records)
    assert max(stored.values()) == 1
