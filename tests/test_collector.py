"""The garbage collector's tuning for serving (unit: the interpreter's own collector)."""

import gc
from collections.abc import Iterator

import pytest

from app.collector import THRESHOLDS, tune_for_serving


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector_restored")
def test_unit_start_up_objects_are_frozen_and_collections_run_less_often() -> None:
    built_at_start = {"app": object()}
    tune_for_serving()
    assert gc.get_threshold() == THRESHOLDS
    assert gc.get_freeze_count() > 0
    # Frozen objects are out of every generation the collector walks.
    assert not any(built_at_start is o for o in gc.get_objects())
