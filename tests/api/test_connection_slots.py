"""The connection slots behind RG_MAX_CONNECTIONS (unit tests, no broker, no sockets; the
protocol is tested against the served process in test_slow_clients.py)."""

import logging

import pytest

from app.api.connection_slots import ConnectionSlots


def test_unit_slots_admit_up_to_the_limit_and_again_once_released() -> None:
    slots = ConnectionSlots(2)
    assert slots.take()
    assert slots.take()
    assert not slots.take()
    assert slots.open == 2
    slots.release()
    assert slots.take()
    assert slots.open == 2


def test_unit_a_storm_of_refusals_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    slots = ConnectionSlots(1)
    slots.take()
    with caplog.at_level(logging.WARNING, logger="app.api.connection_slots"):
        for _ in range(500):
            assert not slots.take()
    assert len(caplog.records) == 1
    assert "1 connection(s) refused with 503: 1 open" in caplog.records[0].getMessage()
