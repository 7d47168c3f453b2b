"""The in-flight bounds (unit: a producer that is never started; only its counters move)."""

import asyncio

import pytest

from app.errors import OverloadedError
from app.ingest.backpressure import Backpressure, ByteBudget
from app.kafka import Delivery, KafkaProducerClient, KafkaProduceResult, KafkaTimeoutError

MIB = 1024 * 1024


def test_unit_records_are_admitted_below_the_bound_and_refused_at_it() -> None:
    producer = KafkaProducerClient()
    budget = ByteBudget(MIB)
    backpressure = Backpressure(producer, max_in_flight=2, budget=budget)
    backpressure.admit().release()
    producer.stats.sent = 2
    with pytest.raises(OverloadedError, match="2 records are waiting"):
        backpressure.admit()
    producer.stats.delivered = 1
    backpressure.admit().release()
    assert budget.refusals.records == 1


def test_unit_bytes_are_reserved_up_to_the_bound_and_released() -> None:
    budget = ByteBudget(10)
    first = budget.reserve(6)
    second = budget.reserve(4)
    assert (budget.held, budget.high_water) == (10, 10)
    with pytest.raises(OverloadedError, match="hold 10 of 10 bytes"):
        budget.reserve(1)
    first.release()
    first.release()  # a second release changes nothing
    assert budget.held == 4
    budget.reserve(6).release()
    second.release()
    assert (budget.held, budget.high_water, budget.refusals.bytes) == (0, 10, 1)


def test_unit_a_growing_hold_is_refused_past_the_bound_and_stays_as_it_was() -> None:
    budget = ByteBudget(10)
    chunked = budget.reserve(0)
    chunked.grow(8)
    with pytest.raises(OverloadedError):
        chunked.grow(3)
    assert (chunked.size, budget.held) == (8, 8)
    chunked.release()
    assert budget.held == 0


def test_unit_a_record_takes_its_bytes_over_from_its_request() -> None:
    """A record made of a request's body is not counted twice: what it takes moves from the
    request's hold to its own, which outlives the request until Kafka settles the record."""
    budget = ByteBudget(100)
    backpressure = Backpressure(KafkaProducerClient(), max_in_flight=10, budget=budget)
    request = budget.reserve(60)
    first = backpressure.admit(25, held=request)
    second = backpressure.admit(25, held=request)
    assert (request.size, budget.held) == (10, 60)
    larger = backpressure.admit(30, held=request)  # 10 from the request, 20 more
    assert (request.size, budget.held) == (0, 80)
    request.release()  # the request is answered; its records are still in flight
    assert budget.held == 80
    for hold in (first, second, larger):
        hold.release()
    assert budget.held == 0


def test_unit_a_refused_record_moves_nothing() -> None:
    budget = ByteBudget(100)
    backpressure = Backpressure(KafkaProducerClient(), max_in_flight=10, budget=budget)
    other = budget.reserve(90)
    request = budget.reserve(5)
    with pytest.raises(OverloadedError):
        backpressure.admit(20, held=request)
    assert (request.size, budget.held) == (5, 95)
    other.release()
    request.release()


async def test_unit_a_handed_over_record_holds_its_bytes_until_it_settles() -> None:
    budget = ByteBudget(100)
    backpressure = Backpressure(KafkaProducerClient(), max_in_flight=10, budget=budget)
    request = budget.reserve(40)
    future: asyncio.Future[KafkaProduceResult] = asyncio.get_running_loop().create_future()

    async def queue() -> Delivery:
        return Delivery("t", future)

    delivery = await backpressure.hand_over(30, request, queue)
    assert (request.size, budget.held) == (10, 40)
    request.release()  # the request is answered; its record is still in flight
    assert budget.held == 30
    future.set_result(KafkaProduceResult(topic="t", partition=0, offset=0))
    await asyncio.sleep(0)
    assert delivery.done()
    assert budget.held == 0


async def test_unit_a_record_not_queued_holds_nothing() -> None:
    budget = ByteBudget(100)
    backpressure = Backpressure(KafkaProducerClient(), max_in_flight=10, budget=budget)

    async def queue() -> Delivery:
        raise KafkaTimeoutError("could not queue")

    with pytest.raises(KafkaTimeoutError):
        await backpressure.hand_over(30, None, queue)
    assert budget.held == 0
    with pytest.raises(OverloadedError):
        await backpressure.hand_over(101, None, queue)
    assert (budget.held, budget.refusals.bytes) == (0, 1)
