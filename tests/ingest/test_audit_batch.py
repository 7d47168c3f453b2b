"""`record_batch()` on the session's real broker: the batch is handed to the producer
in one pass (no task per event), in order on the chain, with one deadline for the whole batch,
and keeps every guarantee of the single-event path: idempotent retries, the bounds, the spool."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from app.errors import Problem, ServiceError, problem_for
from app.ingest.audit_batch import ItemOutcome, record_batch
from app.ingest.receipts import AuditReceipt
from app.ingest.spool import Spool
from app.kafka import KafkaAuditEvent, KafkaClientError, KafkaProducerClient, KafkaProducerConfig
from tests.helpers.ingest import ingest_on
from tests.helpers.kafka import read_all, records_in


def item(user: str = "user-1", **fields: Any) -> dict[str, Any]:
    """A batch item as a client sends it."""
    return {"user_id": user, "model": "m", "prompt": "p", "response": "r", **fields}


def receipts_of(results: list[ItemOutcome]) -> list[Any]:
    return [result if isinstance(result, AuditReceipt) else None for result in results]


def errors_of(results: list[ItemOutcome]) -> list[Problem]:
    """The failed items' errors as a client sees them."""
    return [problem_for(result) for result in results if not isinstance(result, AuditReceipt)]


@pytest.fixture
async def lingering(kafka_bootstrap: str) -> AsyncIterator[KafkaProducerClient]:
    """A producer that holds each batch 5 s before sending it: slower than the trail's budget,
    with the broker up."""
    config = KafkaProducerConfig(bootstrap_servers=kafka_bootstrap, linger_ms=5000)
    async with KafkaProducerClient(config=config) as client:
        yield client


@contextmanager
def counting_tasks() -> Iterator[list[asyncio.Task[Any]]]:
    """The tasks created on the running loop meanwhile (by anyone: the producer's too)."""
    loop = asyncio.get_running_loop()
    created: list[asyncio.Task[Any]] = []
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        created.append(task)
        return task

    loop.set_task_factory(factory)
    try:
        yield created
    finally:
        loop.set_task_factory(previous)


def _outcome(result: ItemOutcome, error_field: str) -> object:
    """An item's receipt status, else the named field of its error (as a client sees it)."""
    if isinstance(result, AuditReceipt):
        return result.status
    assert isinstance(result, KafkaClientError | ServiceError), f"{result!r} is no outcome"
    return getattr(problem_for(result), error_field)


async def test_a_batch_is_queued_in_one_pass_in_order_on_the_chain(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    ingest = ingest_on(producer, topic)
    await ingest.trail.record(KafkaAuditEvent(**item()), wait=True)  # the topic's metadata
    items = [item(f"user-{i % 3}", request_id=f"r{i}") for i in range(60)]
    with counting_tasks() as tasks:
        results = await record_batch(ingest.trail, items, wait=True)
    # One task per event was how it went before: now none of ours (aiokafka's sender may
    # start a few for its requests).
    print(f"tasks created for a batch of {len(items)}: {len(tasks)}")
    assert len(tasks) < 10
    receipts = receipts_of(results)
    assert [r.status for r in receipts if r] == ["acked"] * 60
    # Consecutive chain positions in the order of the items, right after the first record.
    assert [r.seq for r in receipts if r] == list(range(1, 61))
    records = await read_all(kafka_bootstrap, topic, 61)
    by_id = {r.header("rg-event-id"): r for r in records}
    for receipt, sent in zip(receipts, items, strict=True):
        stored = by_id[receipt.event_id]
        assert (stored.partition, stored.offset) == (receipt.partition, receipt.offset)
        assert (stored.key, stored.header("rg-seq")) == (sent["user_id"], str(receipt.seq))
    assert ingest.produced() == 61
    assert (producer.stats.pending, ingest.budget.held) == (0, 0)


async def test_a_batch_sent_again_gets_its_receipts_back_and_writes_nothing(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    trail = ingest_on(producer, topic).trail
    items = [item(event_id=f"evt-{i}") for i in range(5)]
    first = await record_batch(trail, items, wait=True)
    again = await record_batch(trail, [*items, item(event_id="evt-5")], wait=True)
    assert receipts_of(again)[:5] == receipts_of(first)
    assert receipts_of(again)[5].status == "acked"
    # The same event twice in one batch: written once, both items get its receipt.
    twice = await record_batch(trail, [item(event_id="evt-6"), item(event_id="evt-6")], wait=True)
    assert receipts_of(twice)[0] == receipts_of(twice)[1]
    assert await records_in(kafka_bootstrap, topic) == 7
    assert trail.chain.count == 7


async def test_a_batch_beyond_the_bounds_refuses_the_rest_without_a_gap_in_the_chain(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    ingest = ingest_on(producer, topic, max_in_flight=3)
    results = await record_batch(
        ingest.trail, [item(request_id=f"r{i}") for i in range(5)], wait=True
    )
    assert [_outcome(r, "code") for r in results] == [
        "acked",
        "acked",
        "acked",
        "overloaded",
        "overloaded",
    ]
    assert [error.status for error in errors_of(results[3:])] == [503, 503]
    # The refused records gave their positions back: no gap, nothing lost, nothing held.
    assert (ingest.trail.chain.count, ingest.trail.chain.lost) == (3, 0)
    assert (ingest.budget.refusals.records, ingest.budget.held) == (2, 0)
    assert await records_in(kafka_bootstrap, topic) == 3


async def test_a_batch_not_acked_within_its_deadline_answers_503s_and_a_retry_writes_nothing(
    lingering: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    # Budget 3 s for the whole batch, batches held 5 s: every item times out with its record
    # still in the producer; the retry waits for those records instead of writing others.
    trail = ingest_on(lingering, topic, timeout_s=3.0).trail
    items = [item(event_id=f"evt-{i}") for i in range(4)]
    started = asyncio.get_running_loop().time()
    first = await record_batch(trail, items, wait=True)
    took_s = asyncio.get_running_loop().time() - started
    print(f"a batch of 4 not acknowledged answered after {took_s:.2f} s (budget 3 s)")
    assert [error.code for error in errors_of(first)] == ["kafka_timeout"] * 4
    assert lingering.stats.sent == 4
    again = await record_batch(trail, items, wait=True)
    receipts = receipts_of(again)
    assert [r.status for r in receipts if r] == ["acked"] * 4
    assert lingering.stats.sent == 4
    assert await records_in(kafka_bootstrap, topic) == 4
    assert (trail.chain.count, trail.chain.lost) == (4, 0)


async def test_a_batch_answers_queued_without_waiting_and_every_record_arrives(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    ingest = ingest_on(producer, topic)
    results = await record_batch(ingest.trail, [item(), {"user_id": ""}, item()], wait=False)
    assert [_outcome(r, "status") for r in results] == [
        "queued",
        422,
        "queued",
    ]
    await producer.flush(timeout_s=10)
    assert await records_in(kafka_bootstrap, topic) == 2
    assert (producer.stats.pending, ingest.budget.held) == (0, 0)


async def test_a_batch_not_acked_in_time_is_spooled_and_written_once(
    tmp_path: Path, lingering: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    await spool.open()
    try:
        trail = ingest_on(lingering, topic, spool=spool, spool_after_s=0.5).trail
        results = await record_batch(trail, [item(request_id=f"r{i}") for i in range(3)], wait=True)
        assert [r.status for r in receipts_of(results) if r] == ["spooled"] * 3
        assert spool.depth == 3
        # While the spool holds records, a batch goes the single-event way (behind them).
        later = await record_batch(trail, [item(request_id="r3")], wait=True)
        assert receipts_of(later)[0].status == "spooled"
    finally:
        await spool.close()
    await lingering.flush(timeout_s=30)
    assert await records_in(kafka_bootstrap, topic) == 3  # the fourth waits in the spool


async def test_a_batch_cancelled_before_the_producer_took_it_gives_its_positions_back(
    producer: KafkaProducerClient, topic: str, kafka_bootstrap: str
) -> None:
    # A fresh topic: its records wait for the topic's metadata, and the request ends meanwhile.
    ingest = ingest_on(producer, topic)
    items = [item(f"user-{i}") for i in range(5)]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await record_batch(ingest.trail, items, wait=True)
    chain = ingest.trail.chain
    assert (chain.count, chain.lost) == (0, 0)  # all five taken back, none void
    assert (producer.stats.pending, ingest.budget.held) == (0, 0)
    # The next record takes position 0.
    [result] = await record_batch(ingest.trail, [item("user-9")], wait=True)
    assert isinstance(result, AuditReceipt)
    assert result.seq == 0
    assert len(await read_all(kafka_bootstrap, topic, 1)) == 1
