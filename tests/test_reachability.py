"""One log line when Kafka goes away, one when it is back (unit, no broker: the ping is given)."""

import logging

import pytest

from app.reachability import KafkaReachability


async def test_unit_one_line_when_kafka_goes_away_and_one_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = iter([True, False, False, False, True, True])
    connected = [False]

    async def ping() -> bool:
        return next(answers)

    watch = KafkaReachability(ping, connected=lambda: connected[0], servers="127.0.0.1:9")
    caplog.set_level(logging.INFO, logger="app.reachability")
    await watch.check()  # before the first connection: not asked
    connected[0] = True
    for _ in range(6):
        await watch.check()
    lines = [r.getMessage() for r in caplog.records if r.name == "app.reachability"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("Kafka unreachable since ")
    assert "127.0.0.1:9" in lines[0]
    assert lines[1].startswith("Kafka back after ")
    assert watch.unreachable_since is None
