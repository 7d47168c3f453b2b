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
