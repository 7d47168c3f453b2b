"""The chain as the service writes it, read back from the real broker by an independent
consumer: every record a link of its writer's chain, receipts that say where each stands."""

import asyncio
import logging
from typing import Any

import pytest

from app.integrity import GENESIS, ChainWriter, link_of
from app.kafka import KafkaMessage
from tests.helpers.app import client_for, services_of
from tests.helpers.chain import assert_unbroken, chains_of
from tests.helpers.kafka import new_topic, read_all


def event(index: int) -> dict[str, Any]:
    return {
        "user_id": f"user-{index % 7}",
        "model": "gpt-4o",
        "prompt": f"question {index}",
        "response": f"answer {index}",
    }


def assert_receipt_is_the_record(receipt: dict[str, Any], record: KafkaMessage) -> None:
    assert (record.partition, record.offset) == (receipt["partition"], receipt["offset"])
    assert record.header("rg-writer") == receipt["writer"]
    assert record.header("rg-seq") == str(receipt["seq"])
    assert record.header("rg-chain") == receipt["chain"]
    assert record.header("rg-digest") == receipt["digest"]


async def test_a_trail_of_50_events_is_one_unbroken_chain_and_replays_add_nothing(
    kafka_bootstrap: str, topic: str
) -> None:
    async with client_for(kafka_bootstrap, audit_topic=topic) as client:
        receipts = []
        for index in range(50):
            response = await client.post("/audit", json=event(index))
            assert response.status_code == 201, response.text
            receipts.append(response.json())
        # A replay (same event_id) answers the first receipt and takes no position.
        first = receipts[0]
        replay = await client.post("/audit", json={**event(0), "event_id": first["event_id"]})
        assert replay.status_code == 201, replay.text
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first
        chain: ChainWriter = services_of(client).chain
        assert chain.count == 50
        metrics = (await client.get("/metrics")).text
    writer = chain.writer_id
    assert f'rg_audit_writer_info{{writer="{writer}"}} 1.0' in metrics
    assert "rg_audit_chain_seq 49.0" in metrics
    assert "rg_audit_chain_lost_total 0.0" in metrics

    records = await read_all(kafka_bootstrap, topic, 50, value_format="bytes")
    writers = chains_of(records)
    assert list(writers) == [writer]
    assert_unbroken(writer, writers[writer])
    assert [r["seq"] for r in receipts] == list(range(50))
    for receipt, record in zip(receipts, writers[writer], strict=True):
        assert_receipt_is_the_record(receipt, record)


async def test_100_concurrent_requests_give_a_contiguous_chain(
    kafka_bootstrap: str, topic: str
) -> None:
    async with client_for(kafka_bootstrap, audit_topic=topic) as client:
        responses = await asyncio.gather(
            *(client.post("/audit", json=event(i)) for i in range(100))
        )
        batch = await client.post("/audit/batch", json={"events": [event(i) for i in range(10)]})
        writer = services_of(client).chain.writer_id
    assert {response.status_code for response in responses} == {201}
    assert batch.status_code == 200, batch.text
    receipts = [response.json() for response in responses]
    receipts += [item["receipt"] for item in batch.json()["results"]]
    assert sorted(receipt["seq"] for receipt in receipts) == list(range(110))

    records = await read_all(kafka_bootstrap, topic, 110, value_format="bytes")
    writers = chains_of(records)
    assert list(writers) == [writer]
    assert_unbroken(writer, writers[writer])
    by_seq = {receipt["seq"]: receipt for receipt in receipts}
    for record in writers[writer]:
        assert_receipt_is_the_record(by_seq[int(record.header("rg-seq") or "")], record)


async def test_every_start_is_a_new_writer_with_its_own_chain(
    kafka_bootstrap: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.services")
    writers = []
    for run in range(2):
        async with client_for(kafka_bootstrap, audit_topic=topic) as client:
            for index in range(3):
                response = await client.post("/audit", json=event(run * 10 + index))
                assert response.status_code == 201, response.text
            writers.append(services_of(client).chain.writer_id)
    assert writers[0] != writers[1]
    started = [r.getMessage() for r in caplog.records if "starts its chain" in r.getMessage()]
    assert started == [f"audit writer {writer} starts its chain at seq 0" for writer in writers]
    chains = chains_of(await read_all(kafka_bootstrap, topic, 6, value_format="bytes"))
    assert sorted(chains) == sorted(writers)
    for writer, chain in chains.items():
        assert_unbroken(writer, chain)


async def test_a_record_refused_before_it_was_sent_leaves_no_gap(
    kafka_bootstrap: str, topic: str
) -> None:
    huge = "x" * 700_000  # above the producer's 1 MB request size: refused, nothing sent
    async with client_for(kafka_bootstrap, audit_topic=topic, max_body_bytes=4 << 20) as client:
        refused = await client.post("/audit", json={**event(0), "prompt": huge, "response": huge})
        assert refused.status_code == 413, refused.text
        stored = await client.post("/audit", json=event(1))
        chain = services_of(client).chain
    assert stored.json()["seq"] == 0
    head = chain.durable()
    assert head is not None
    assert (chain.count, chain.lost, head.void) == (1, 0, {})


async def test_a_record_kafka_fails_for_good_is_a_void_position_the_chain_goes_past(
    kafka_bootstrap: str,
) -> None:
    # The topic takes at most 20 kB a batch (the producer's batches kept under that, as the
    # audit topic's check asks): the producer sends a bigger record, the broker refuses it.
    # Its position was on the wire, so it cannot be given back: it is void.
    topic = await new_topic(kafka_bootstrap, 1, {"max.message.bytes": "20000"})
    async with client_for(kafka_bootstrap, audit_topic=topic, kafka_max_batch_size=16384) as client:
        failed = await client.post("/audit", json={**event(0), "prompt": "y" * 50_000})
        assert failed.status_code == 413, failed.text
        stored = await client.post("/audit", json=event(1))
        assert stored.status_code == 201, stored.text
        chain = services_of(client).chain
        metrics = (await client.get("/metrics")).text
    assert "rg_audit_chain_lost_total 1.0" in metrics
    head = chain.durable()
    assert head is not None
    assert list(head.void) == [0]  # the lost record's digest
    receipt = stored.json()
    assert receipt["seq"] == 1
    assert head.seq == 1
    # The stored record's link continues from the void one: a verifier given the void's digest
    # computes its link and goes on.
    [record] = await read_all(kafka_bootstrap, topic, 1, value_format="bytes")
    digest = (record.header("rg-digest") or "").removeprefix("sha256:")
    lost_link = link_of(chain.writer_id, 0, GENESIS, head.void[0])
    assert record.header("rg-chain") == f"sha256:{link_of(chain.writer_id, 1, lost_link, digest)}"


async def test_concurrent_retries_of_one_event_take_one_position(
    kafka_bootstrap: str, topic: str
) -> None:
    same = {**event(0), "event_id": "0192a000-0000-7000-8000-0000000000aa"}
    async with client_for(kafka_bootstrap, audit_topic=topic) as client:
        responses = await asyncio.gather(*(client.post("/audit", json=same) for _ in range(10)))
        chain = services_of(client).chain
        assert chain.count == 1
    receipts = [response.json() for response in responses]
    assert all(receipt == receipts[0] for receipt in receipts)
    assert receipts[0]["seq"] == 0
    assert sum(response.headers.get("Idempotent-Replayed") == "true" for response in responses) == 9
    [record] = await read_all(kafka_bootstrap, topic, 1, value_format="bytes")
    assert_unbroken(chain.writer_id, [record])
