"""The shutdown flag (the signal handling itself is exercised by tests/faults)."""

from app.shutdown import Shutdown


def test_unit_draining_starts_once_and_measures_from_the_first_call() -> None:
    shutdown = Shutdown()
    assert not shutdown.draining
    assert shutdown.elapsed_s() == 0
    shutdown.begin()
    first = shutdown.elapsed_s()
    shutdown.begin()
    assert shutdown.draining
    assert shutdown.elapsed_s() >= first
