"""Delivery, outcome_of and ProducerStats: what becomes of a record once queued."""

import asyncio

import pytest

from app.kafka import Delivery, KafkaClientError, KafkaProduceResult, KafkaTimeoutError, outcome_of


async def test_unit_outcome_of_reads_any_settled_future_as_result_or_error() -> None:
    loop = asyncio.get_running_loop()
    acked: asyncio.Future[str] = loop.create_future()
    acked.set_result("ok")
    refused: asyncio.Future[str] = loop.create_future()
    refused.set_exception(KafkaTimeoutError("late"))
    foreign: asyncio.Future[str] = loop.create_future()
    foreign.set_exception(RuntimeError("boom"))
    cancelled: asyncio.Future[str] = loop.create_future()
    cancelled.cancel()

    assert outcome_of(acked) == ("ok", None)
    failed = ((refused, "late"), (foreign, "RuntimeError: boom"), (cancelled, "cancelled"))
    for future, reason in failed:
        outcome = outcome_of(future)
        assert outcome[0] is None
        assert isinstance(outcome[1], KafkaClientError)
        assert reason in str(outcome[1])
    assert isinstance(outcome_of(refused)[1], KafkaTimeoutError)  # a library error as it was


async def test_unit_a_delivery_reports_only_once_settled_and_a_failing_callback_stops_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    future: asyncio.Future[KafkaProduceResult] = asyncio.get_running_loop().create_future()
    delivery = Delivery("t", future)
    with pytest.raises(asyncio.InvalidStateError):
        delivery.outcome()
    with pytest.raises(KafkaTimeoutError, match=r"no acknowledgement .* within 0\.01s"):
        await delivery.wait(0.01)
    assert not future.cancelled()

    def failing(*_: object) -> None:
        raise RuntimeError("callback bug")

    told: list[KafkaClientError | None] = []
    delivery.add_done_callback(failing)
    delivery.add_done_callback(lambda _, error: told.append(error))
    delivery.log_failure()
    future.set_exception(KafkaTimeoutError("expired"))
    await asyncio.sleep(0)
    assert [str(error) for error in told] == ["expired"]
    assert "a delivery callback failed for a record to 't'" in caplog.text
    assert "record to 't' was not delivered: expired" in caplog.text


async def test_unit_waiting_for_a_delivery_never_cancels_it_and_leaves_nothing_behind() -> None:
    loop = asyncio.get_running_loop()
    acked = KafkaProduceResult(topic="t", partition=0, offset=7, timestamp_ms=None)
    future: asyncio.Future[KafkaProduceResult] = loop.create_future()
    delivery = Delivery("t", future)
    # Past its time: a timeout, the record left to the producer.
    with pytest.raises(KafkaTimeoutError, match=r"within 0\.01s"):
        await delivery.wait(0.01)
    assert not future.done()
    # The waiting task cancelled: the record still left be.
    waiting = asyncio.ensure_future(delivery.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not future.done()
    # No time left at all: a timeout at once, without waiting.
    with pytest.raises(KafkaTimeoutError):
        await Delivery("t", future, timeout_s=1.0, deadline=loop.time() - 1).wait()
    # Settled while waited for: its result; no callback of a wait stays on the future.
    waiting = asyncio.ensure_future(delivery.wait(5.0))
    await asyncio.sleep(0)
    future.set_result(acked)
    assert await waiting == acked
    assert await delivery.wait(0) == acked
    callbacks = getattr(future, "_callbacks", None)
    assert not callbacks
    failed: asyncio.Future[KafkaProduceResult] = loop.create_future()
    failed.set_exception(KafkaTimeoutError("the broker's own timeout"))
    with pytest.raises(KafkaTimeoutError, match="the broker's own"):
        await Delivery("t", failed).wait(1.0)
