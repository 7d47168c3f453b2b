"""KafkaAuditLogger: the record on Kafka, checked by an independent aiokafka consumer."""

import hashlib
import json

from aiokafka import AIOKafkaConsumer

from app.integrity import ChainPosition
from app.kafka import KafkaAuditEvent, KafkaAuditLogger, KafkaProducerClient


async def test_the_audit_record_has_every_field_the_key_headers_and_a_true_digest(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    audit = KafkaAuditLogger(producer, topic=topic)
    assert audit.topic == topic
    event, result = await audit.log(
        user_id="u-42",
        model="gpt-4o",
        prompt="Summarize incident report",
        response="Summary ...",
        request_id="req-1",
        metadata={"tenant": "acme", "tokens": 17},
    )
    assert result is not None

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()

    assert (record.partition, record.offset) == (result.partition, result.offset)
    assert record.key == b"u-42"
    stored = json.loads(record.value)
    assert stored == {
        "user_id": "u-42",
        "model": "gpt-4o",
        "prompt": "Summarize incident report",
        "response": "Summary ...",
        "request_id": "req-1",
        "metadata": {"tenant": "acme", "tokens": 17},
        "timestamp_utc": event.timestamp_utc,
        "event_id": event.event_id,
        "schema_version": 1,
    }
    headers = dict(record.headers)
    assert headers["content-type"] == b"application/json"
    assert headers["rg-event-id"] == event.event_id.encode()
    canonical = json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    recomputed = "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert record.value == canonical.encode("utf-8")
    assert headers["rg-digest"] == recomputed.encode()
    assert event.digest() == recomputed


async def test_per_user_order_holds_on_one_partition(
    producer: KafkaProducerClient, topic: str
) -> None:
    audit = KafkaAuditLogger(producer, topic=topic)
    results = [
        (await audit.log(user_id="same-user", model="m", prompt=f"p{i}", response="r")).result
        for i in range(5)
    ]
    assert len({r.partition for r in results if r}) == 1
    offsets = [r.offset for r in results if r]
    assert offsets == sorted(offsets)


async def test_wait_false_returns_the_event_without_a_result(
    producer: KafkaProducerClient, topic: str
) -> None:
    event, result = await KafkaAuditLogger(producer, topic=topic).log(
        user_id="u", model="m", prompt="p", response="r", wait=False
    )
    assert result is None
    assert event.user_id == "u"
    await producer.flush(timeout_s=10)
    assert producer.stats.delivered == 1


def test_unit_record_of_adds_the_chain_headers_and_only_from_a_position() -> None:
    audit = KafkaAuditLogger(KafkaProducerClient(), topic="t")
    event = KafkaAuditEvent(user_id="u", model="m", prompt="p", response="r")
    forged = {"rg-writer": "f" * 32, "rg-seq": "7", "rg-chain": "sha256:" + "e" * 64, "x": "1"}
    # A caller's headers never pass for chain headers.
    plain = audit.record_of(event, forged)
    assert not {"rg-writer", "rg-seq", "rg-chain"} & set(plain.headers)
    assert plain.headers["x"] == "1"
    place = ChainPosition("a" * 32, 3, "b" * 64)
    chained = audit.record_of(event, forged, place=place)
    assert {name: chained.headers[name] for name in ("rg-writer", "rg-seq", "rg-chain")} == {
        "rg-writer": "a" * 32,
        "rg-seq": "3",
        "rg-chain": "sha256:" + "b" * 64,
    }
    assert chained.value == plain.value
