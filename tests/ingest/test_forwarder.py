"""The spool's forwarder against the session's real broker."""

from pathlib import Path
from typing import Any

from app.ingest.forwarder import SpoolForwarder
from app.ingest.spool import Spool
from app.kafka import AuditRecord, KafkaAuditLogger, KafkaProducerClient
from tests.helpers.kafka import read_all, records_in
from tests.helpers.polling import eventually


def record(topic: str, user: str, n: int) -> AuditRecord:
    return AuditRecord(
        topic=topic,
        key=user,
        value=f'{{"user":"{user}","n":{n}}}'.encode(),
        headers={"content-type": "application/json", "rg-event-id": f"{user}-{n}"},
    )


async def forward_all(spool: Spool, producer: KafkaProducerClient, **options: Any) -> None:
    """Run a forwarder until the spool is empty, then close both."""
    forwarder = SpoolForwarder(spool, KafkaAuditLogger(producer), **options)
    forwarder.start()

    async def empty() -> bool:
        return not spool.depth

    try:
        await eventually(empty, timeout_s=30)
    finally:
        await forwarder.close()
        await spool.close()


async def test_spooled_records_reach_kafka_in_order_per_key_and_leave_the_spool(
    tmp_path: Path, producer: KafkaProducerClient, kafka_bootstrap: str, topic: str
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 24)
    await spool.open()
    users = [f"user-{u}" for u in range(5)]
    for n in range(60):
        user = users[n % len(users)]
        await spool.append(record(topic, user, n), event_id=f"{user}-{n}")
    forwarded: list[int] = []
    await forward_all(spool, producer, batch_size=25, on_forwarded=forwarded.append)
    assert sum(forwarded) == 60
    messages = await read_all(kafka_bootstrap, topic, 60)
    assert await records_in(kafka_bootstrap, topic) == 60
    for user in users:
        mine = sorted((m for m in messages if m.key == user), key=lambda m: m.offset)
        assert [m.header("rg-event-id") for m in mine] == [
            f"{user}-{n}" for n in range(60) if users[n % len(users)] == user
        ]


async def test_a_record_with_an_attempt_under_way_is_not_sent_twice(
    tmp_path: Path, producer: KafkaProducerClient, kafka_bootstrap: str, topic: str
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 24)
    await spool.open()
    first = record(topic, "user-1", 0)
    delivery = await producer.send(first.topic, first.value, key=first.key, headers=first.headers)
    await spool.append(first, event_id="user-1-0", delivery=delivery)
    await spool.append(record(topic, "user-1", 1), event_id="user-1-1")
    await forward_all(spool, producer)
    messages = await read_all(kafka_bootstrap, topic, 2)
    assert [m.header("rg-event-id") for m in sorted(messages, key=lambda m: m.offset)] == [
        "user-1-0",
        "user-1-1",
    ]
    assert await records_in(kafka_bootstrap, topic) == 2


async def test_records_left_by_an_earlier_run_are_forwarded_after_a_restart(
    tmp_path: Path, producer: KafkaProducerClient, kafka_bootstrap: str, topic: str
) -> None:
    earlier = Spool(tmp_path, max_bytes=1 << 24)
    await earlier.open()
    for n in range(3):
        await earlier.append(record(topic, "user-1", n), event_id=f"user-1-{n}")
    await earlier.close()  # the service stopped with Kafka away

    spool = Spool(tmp_path, max_bytes=1 << 24)
    await spool.open()
    await forward_all(spool, producer)
    assert await records_in(kafka_bootstrap, topic) == 3


async def test_a_record_the_producer_will_never_take_does_not_hold_up_the_others(
    tmp_path: Path, producer: KafkaProducerClient, kafka_bootstrap: str, topic: str
) -> None:
    # Spooled before the service refused such records up front (or with a smaller
    # max_request_size since): it stays in the spool, said at ERROR, and the rest go on.
    spool = Spool(tmp_path, max_bytes=1 << 24)
    await spool.open()
    big = AuditRecord(
        topic=topic, key="user-1", value=b"v" * (2 << 20), headers={"rg-event-id": "big"}
    )
    await spool.append(record(topic, "user-1", 0), event_id="user-1-0")
    await spool.append(big, event_id="big")
    for n in range(1, 4):
        await spool.append(record(topic, "user-1", n), event_id=f"user-1-{n}")
    forwarder = SpoolForwarder(spool, KafkaAuditLogger(producer))
    forwarder.start()

    async def one_left() -> bool:
        return spool.depth == 1

    try:
        await eventually(one_left, timeout_s=30)
    finally:
        await forwarder.close()
    left = await spool.read(10)
    await spool.close()
    assert [r.event_id for r in left] == ["big"]
    messages = await read_all(kafka_bootstrap, topic, 4)
    assert [m.header("rg-event-id") for m in sorted(messages, key=lambda m: m.offset)] == [
        f"user-1-{n}" for n in range(4)
    ]
