"""Exponential backoff (unit, no broker)."""

from app.backoff import Backoff


async def test_unit_the_delay_doubles_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(initial_s=0.001, max_s=0.004)
    delays = []
    for _ in range(4):
        delays.append(backoff.delay_s)
        await backoff.wait()
    assert delays == [0.001, 0.002, 0.004, 0.004]
    backoff.reset()
    assert backoff.delay_s == 0.001
