"""Background tasks and exponential backoff (unit, no broker)."""

import asyncio
import contextlib

import pytest

from app.tasks import BackgroundTask, Backoff


async def test_unit_the_delay_doubles_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(initial_s=0.001, max_s=0.004)
    delays = []
    for _ in range(4):
        delays.append(backoff.delay_s)
        await backoff.wait()
    assert delays == [0.001, 0.002, 0.004, 0.004]
    backoff.reset()
    assert backoff.delay_s == 0.001


async def test_unit_close_cancels_the_task_and_returns_once_it_has_ended() -> None:
    began = asyncio.Event()
    cleaned_up: list[str] = []

    async def run() -> None:
        began.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.append("done")

    task = BackgroundTask("forever", run)
    task.start()
    await asyncio.wait_for(began.wait(), 5)
    assert task.running
    assert any(t.get_name() == "forever" for t in asyncio.all_tasks())
    await task.close()
    assert not task.running
    assert cleaned_up == ["done"]


async def test_unit_a_task_never_started_closes_and_a_finished_one_starts_again() -> None:
    runs: list[int] = []

    async def run() -> None:
        runs.append(len(runs))

    task = BackgroundTask("once", run)
    await task.close()  # never started: nothing to do
    task.start()
    await task.wait(5)
    assert not task.running
    task.start()
    await task.wait(5)
    assert runs == [0, 1]
    await task.close()


async def test_unit_wait_gives_up_after_its_timeout_and_leaves_the_task_running() -> None:
    task = BackgroundTask("slow", lambda: asyncio.sleep(30))
    task.start()
    await task.wait(0.01)
    assert task.running
    await task.close()
    assert not task.running


async def test_unit_a_task_that_fails_or_is_cancelled_by_another_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def stray_cancel() -> None:
        raise asyncio.CancelledError

    for name, run in (("fails", fails), ("stray", stray_cancel)):
        task = BackgroundTask(name, run)
        task.start()
        with contextlib.suppress(RuntimeError, asyncio.CancelledError):
            await task._task  # type: ignore[misc]  # ended by itself
        await asyncio.sleep(0)  # the done callback runs on the next turn of the loop
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("fails" in m and "boom" in m for m in errors), errors
    assert any("stray" in m and "cancelled" in m for m in errors), errors


async def test_unit_a_task_closed_by_the_service_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = BackgroundTask("forever", asyncio.Event().wait)  # type: ignore[arg-type]
    task.start()
    await asyncio.sleep(0)
    await task.close()
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_unit_close_ends_a_task_that_swallowed_its_first_cancellation() -> None:
    # As aiokafka's consumer stop() does when the cancellation reaches it mid-stop: a retry
    # loop then went on for good and close() (the service's shutdown) never returned.
    swallowed = 0

    async def run() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    task = BackgroundTask("swallows", run)
    task.start()
    await asyncio.sleep(0)
    closing = asyncio.create_task(task.close())
    # Not wait_for: cancelling close() at its timeout would cancel the task a second time.
    done, _ = await asyncio.wait({closing}, timeout=5)
    assert closing in done, "close() did not return"
    assert swallowed == 1
    assert not task.running
