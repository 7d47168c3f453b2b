"""Background tasks and exponential backoff (unit, no broker)."""

import asyncio

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
