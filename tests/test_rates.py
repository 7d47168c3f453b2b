"""RateHistory: records/s from a monotonic counter, sampled in the background (no broker)."""

import asyncio

from app.rates import RateHistory


def test_unit_rate_history_turns_counter_samples_into_records_per_second() -> None:
    count = 0
    history = RateHistory(lambda: count, interval_s=5.0, keep=3)
    history.sample(now=100.0)
    assert history.rates() == []
    for now, total in ((105.0, 50), (110.0, 50), (115.0, 80), (120.0, 130)):
        count = total
        history.sample(now=now)
    # Only the last `keep` intervals: 0/s, 6/s, 10/s.
    assert history.rates() == [0.0, 6.0, 10.0]
    count = 0  # a new producer's counter starts again: no negative rate
    history.sample(now=125.0)
    assert history.rates() == [6.0, 10.0, 0.0]


async def test_unit_rate_history_samples_in_the_background_until_closed() -> None:
    count = 0

    def read() -> int:
        nonlocal count
        count += 10
        return count

    history = RateHistory(read, interval_s=0.01)
    history.start()
    await asyncio.sleep(0.1)
    await history.close()
    taken = len(history.rates())
    assert taken >= 2
    assert all(rate > 0 for rate in history.rates())
    await asyncio.sleep(0.05)
    assert len(history.rates()) == taken  # closed: no more samples
