"""AsyncLifecycle: async with, and a start that survives its caller's cancellation (unit,
a fake client; no broker)."""

import asyncio

import pytest

from app.kafka.lifecycle import AsyncLifecycle


class FakeClient(AsyncLifecycle):
    """Records what happened; its start takes `start_s`."""

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self.events: list[str] = []

    async def start(self) -> None:
        await asyncio.sleep(self.start_s)
        self.events.append("started")

    async def close(self) -> None:
        self.events.append("closed")


async def test_unit_async_with_starts_and_closes() -> None:
    client = FakeClient(0)
    async with client as entered:
        assert entered is client
    assert client.events == ["started", "closed"]


async def test_unit_a_cancelled_start_is_let_finish_then_closed() -> None:
    client = FakeClient(0.2)
    task = asyncio.create_task(client.start_uninterrupted())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.events == ["started", "closed"]


async def test_unit_a_start_that_outlasts_the_grace_is_given_up() -> None:
    client = FakeClient(60)
    task = asyncio.create_task(client.start_uninterrupted(grace_s=0.1))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert client.events == ["closed"]
