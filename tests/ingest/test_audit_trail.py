"""The ingest path without HTTP: an `AuditTrail` on the session's real broker, with a real
producer, answering with receipts (acked, queued, spooled), refusing when overloaded, and
letting a retry wait for its first attempt instead of writing a second record."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.errors import OverloadedError
from app.ingest.spool import Spool
from app.integrity import ChainPosition
from app.kafka import (
    AuditRecord,
    KafkaAuditEvent,
    KafkaProducerClient,
    KafkaProducerConfig,
    KafkaRecordTooLargeError,
    KafkaTimeoutError,
)
from tests.helpers.ingest import ingest_on
from tests.helpers.kafka import read_all, records_in
from tests.helpers.polling import eventually


def an_event(user: str = "user-1") -> KafkaAuditEvent:
    return KafkaAuditEvent(user_id=user, model="m", prompt="p", response="r")


@pytest.fixture
async def lingering(kafka_bootstrap: str) -> AsyncIterator[KafkaProducerClient]:
    """A producer that holds each batch 5 s before sending it: slower than the trail's budget,
    with the broker up."""
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, linger_ms=5000)
    async with KafkaProducerClient(config=config) as client:
        yield client


async def test_an_acked_receipt_says_where_kafka_stored_the_record(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    ingest = ingest_on(producer, topic)
    event = an_event()
    receipt = await ingest.trail.record(event, wait=True)
    assert receipt.status == "acked"
    assert (receipt.event_id, receipt.topic, receipt.digest) == (
        event.event_id,
        topic,
        event.digest(),
    )
    [message] = await read_all(kafka_bootstrap, topic, 1)
    assert (message.partition, message.offset) == (receipt.partition, receipt.offset)
    assert message.key == "user-1"
    assert message.header("rg-event-id") == event.event_id
    assert message.header("rg-digest") == receipt.digest
    assert ingest.produced() == 1
    assert ingest.budget.held == 0  # the record's hold is released once Kafka settled it


async def test_wait_false_answers_queued_and_the_record_still_arrives(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    ingest = ingest_on(producer, topic)
    receipt = await ingest.trail.record(an_event(), wait=False)
    assert (receipt.status, receipt.partition, receipt.offset) == ("queued", None, None)
    await producer.flush(timeout_s=10)
    assert await records_in(kafka_bootstrap, topic) == 1
    assert ingest.produced() == 1
    assert (producer.stats.pending, ingest.budget.held) == (0, 0)


async def test_an_event_recorded_again_gets_its_first_receipt_and_nothing_is_written(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    trail = ingest_on(producer, topic).trail
    event = an_event()
    first, replayed = await trail.record_once(event, wait=True)
    assert not replayed
    again, replayed = await trail.record_once(event, wait=True)
    assert replayed
    assert again == first
    assert await records_in(kafka_bootstrap, topic) == 1


async def test_a_retry_after_a_timeout_waits_for_the_first_attempt(
    lingering: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    # Budget 3 s, batches held 5 s: the first attempt times out at 3 s with its record still in
    # the producer; the retry waits for that record (sent at 5 s) instead of writing another.
    trail = ingest_on(lingering, topic, timeout_s=3.0).trail
    event = an_event()
    with pytest.raises(KafkaTimeoutError, match="the record may still be stored"):
        await trail.record_once(event, wait=True)
    receipt, replayed = await trail.record_once(event, wait=True)
    assert (receipt.status, receipt.event_id) == ("acked", event.event_id)
    assert not replayed  # answered by the first attempt's delivery, not from the kept receipts
    assert await trail.record_once(event, wait=True) == (receipt, True)
    [message] = await read_all(kafka_bootstrap, topic, 1)
    assert (message.partition, message.offset) == (receipt.partition, receipt.offset)
    assert await records_in(kafka_bootstrap, topic) == 1


async def test_a_retry_while_the_first_attempt_is_unacknowledged_writes_nothing(
    lingering: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    # Budget 1 s, batches held 5 s: the retry gives up waiting for the first attempt as well.
    trail = ingest_on(lingering, topic, timeout_s=1.0).trail
    event = an_event()
    with pytest.raises(KafkaTimeoutError, match="the record may still be stored"):
        await trail.record_once(event, wait=True)
    with pytest.raises(KafkaTimeoutError, match=f"earlier attempt of event {event.event_id}"):
        await trail.record_once(event, wait=True)
    assert lingering.stats.sent == 1
    await lingering.flush(timeout_s=30)
    # Acknowledged after its clients stopped waiting: the next retry gets its receipt.
    receipt, replayed = await trail.record_once(event, wait=True)
    assert (receipt.status, replayed) == ("acked", True)
    assert await records_in(kafka_bootstrap, topic) == 1
    # The retries took no chain position: one record, seq 0, settled.
    assert (trail.chain.count, receipt.seq) == (1, 0)
    assert trail.chain.durable_head() is not None


async def test_beyond_the_bounds_a_record_is_refused_overloaded_and_nothing_is_held(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    by_records = ingest_on(producer, topic, max_in_flight=1)
    await by_records.trail.record(an_event(), wait=False)  # in flight until Kafka acks it
    with pytest.raises(OverloadedError, match="1 records are waiting"):
        await by_records.trail.record(an_event(), wait=False)
    # The refused record gave its chain position back: no gap, nothing lost.
    assert (by_records.trail.chain.count, by_records.trail.chain.lost) == (1, 0)
    assert by_records.budget.refusals.records == 1

    by_bytes = ingest_on(producer, topic, max_bytes=100)
    with pytest.raises(OverloadedError, match="RG_MAX_IN_FLIGHT_BYTES"):
        await by_bytes.trail.record(an_event(), wait=True)
    assert (by_bytes.budget.refusals.bytes, by_bytes.budget.held) == (1, 0)
    assert (by_bytes.trail.chain.count, by_bytes.trail.chain.lost) == (0, 0)
    await producer.flush(timeout_s=10)
    assert await records_in(kafka_bootstrap, topic) == 1


async def test_without_a_started_producer_events_are_spooled(
    tmp_path: Path, kafka_bootstrap: str, topic: str
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    await spool.open()
    idle = KafkaProducerClient(config=KafkaProducerConfig(bootstrap_servers=kafka_bootstrap))
    try:
        ingest = ingest_on(idle, topic, spool=spool)
        event = an_event()
        receipt = await ingest.trail.record(event, wait=True)
        assert (receipt.status, receipt.partition, receipt.digest) == (
            "spooled",
            None,
            event.digest(),
        )
        [spooled] = await spool.read(10)
        assert spooled.event_id == event.event_id
        # Exactly as written, its chain position included; the spool's commit settles it.
        place = ChainPosition(receipt.writer, receipt.seq, receipt.chain.removeprefix("sha256:"))
        assert place.seq == 0
        assert spooled.record == ingest.audit_logger.record_of(event, place=place)
        assert ingest.trail.chain.durable_head() == place
        assert idle.stats.sent == 0
    finally:
        await spool.close()
        await idle.close()


async def test_a_record_not_acked_in_time_is_spooled_and_written_once(
    tmp_path: Path, lingering: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    await spool.open()
    try:
        trail = ingest_on(lingering, topic, spool=spool, spool_after_s=0.5).trail
        receipt = await trail.record(an_event(), wait=True)
        assert receipt.status == "spooled"
        assert spool.depth == 1
        # The spooled record keeps its attempt under way: once Kafka acknowledges that, it
        # leaves the spool, and no second record is written.
        [entry] = await spool.read(10)
        assert entry.delivery is not None

        async def drained() -> bool:
            return not spool.depth

        await eventually(drained, timeout_s=30)
    finally:
        await spool.close()
    assert await records_in(kafka_bootstrap, topic) == 1


async def test_an_event_too_large_for_the_producer_is_refused_rather_than_spooled(
    tmp_path: Path, producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    # While the spool holds records new events go to it first. One the producer will never
    # take (its size) is refused as it is without a spool, not spooled: the forwarder could
    # never send it, and every record spooled after it would wait behind it.
    spool = Spool(tmp_path, max_bytes=1 << 24)
    await spool.open()
    try:
        trail = ingest_on(producer, topic, spool=spool).trail
        big = KafkaAuditEvent(user_id="u", model="m", prompt="p" * 600_000, response="r" * 600_000)
        with pytest.raises(KafkaRecordTooLargeError):
            await trail.record(big, wait=True)
        waiting = AuditRecord(topic=topic, key="w", value=b"{}", headers={"rg-event-id": "w"})
        await spool.append(waiting, event_id="w")
        assert trail.spool_first()
        with pytest.raises(KafkaRecordTooLargeError):
            await trail.record(big, wait=True)
        assert spool.depth == 1
        spooled = await trail.record(an_event(), wait=True)
        assert spooled.status == "spooled"
        # The refused events took no chain position.
        assert spooled.seq == 0
    finally:
        await spool.close()
    assert await records_in(kafka_bootstrap, topic) == 0


async def test_at_shutdown_the_queued_records_kafka_has_not_acknowledged_go_to_the_spool(
    tmp_path: Path, lingering: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    # Answered 202 and still in the producer (held 5 s): spooled, each tied to its delivery,
    # so the acknowledgement that comes after all takes it out of the spool again.
    spool = Spool(tmp_path, max_bytes=1 << 20)
    await spool.open()
    try:
        trail = ingest_on(lingering, topic, spool=spool, spool_after_s=30).trail
        acked = await trail.record(an_event(), wait=True)
        queued = [(await trail.record_once(an_event(), wait=False))[0] for _ in range(3)]
        assert [r.status for r in queued] == ["queued"] * 3
        assert await trail.spool_queued() == 3
        assert spool.depth == 3
        assert await trail.spool_queued() == 0  # each once
        spooled = [record.event_id for record in await spool.read(10)]
        assert spooled == [r.event_id for r in queued]
        await lingering.flush(timeout_s=30)

        async def removed() -> bool:
            return not spool.depth

        await eventually(removed, timeout_s=30)
        assert trail.chain.durable_head() == ChainPosition(
            acked.writer, queued[-1].seq, queued[-1].chain.removeprefix("sha256:")
        )
    finally:
        await spool.close()
    assert await records_in(kafka_bootstrap, topic) == 4


async def test_a_retry_of_a_queued_event_waits_for_it_while_the_spool_holds_records(
    tmp_path: Path, lingering: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    # While the spool holds records new events go to it first; a retry of an event still in
    # the producer is no new event: it waits for that attempt, not spooled a second time.
    spool = Spool(tmp_path, max_bytes=1 << 20)
    await spool.open()
    try:
        trail = ingest_on(lingering, topic, spool=spool, spool_after_s=0.5).trail
        queued_event = an_event()
        first, _ = await trail.record_once(queued_event, wait=False)
        assert first.status == "queued"
        assert (await trail.record(an_event(), wait=True)).status == "spooled"
        assert trail.spool_first()
        # Still in the producer (held 5 s, the budget 0.5 s): the retry is told so.
        with pytest.raises(KafkaTimeoutError, match="still not acknowledged"):
            await trail.record_once(queued_event, wait=True)

        async def drained() -> bool:
            return not spool.depth

        await eventually(drained, timeout_s=30)
        retry, replayed = await trail.record_once(queued_event, wait=True)
        assert (retry.status, retry.seq, retry.digest, replayed) == (
            "acked",
            first.seq,
            first.digest,
            True,
        )
    finally:
        await spool.close()
    assert await records_in(kafka_bootstrap, topic) == 2
